/*
 * nodegate's DPDK shim: fourteen functions with our own small ABI (fixed-width integers,
 * byte pointers, two plain structs) over DPDK 22.11. Rust declares them by hand in
 * ffi/src/dpdk.rs; keep the two in step. No DPDK type crosses this boundary except as an
 * opaque pointer (the mempool), so DPDK's own struct layouts never have to be mirrored in Rust.
 *
 * Errors are returned as negative errno values (-rte_errno where DPDK sets that).
 */
#ifndef NODEGATE_DPDK_SHIM_H
#define NODEGATE_DPDK_SHIM_H

#include <stdint.h>

/* What nodegate needs to know about a probed device. */
struct ng_dev_info {
	uint16_t port_id;
	uint16_t max_rx_queues;
	uint16_t max_tx_queues;
	uint8_t mac[6];
	int32_t socket_id;
	/* NUL-terminated, truncated. */
	char driver[32];
};

/* Device counters (struct rte_eth_stats without the per-queue arrays). */
struct ng_stats {
	uint64_t ipackets;
	uint64_t opackets;
	uint64_t imissed;
	uint64_t ierrors;
	uint64_t oerrors;
	uint64_t rx_nombuf;
};

/* rte_eal_init; returns >= 0 or -rte_errno. argv[argc] must be NULL. */
int ng_eal_init(int argc, char **argv);
/* rte_eal_cleanup; returns 0 or a negative errno. */
int ng_eal_cleanup(void);
/* rte_lcore_id() of the calling thread, or -1 for LCORE_ID_ANY (not an lcore). */
int ng_lcore_id(void);
/* rte_thread_register: 0 (the thread may still have got no lcore id, which leaves it valid but
 * without mempool caches) or a negative errno. */
int ng_thread_register(void);
void ng_thread_unregister(void);
/* rte_strerror for a positive errno value. */
const char *ng_strerror(int errnum);

/* Looks up the ethdev named `name` (a PCI address or a vdev name) and fills `out`. */
int ng_dev_info(const char *name, struct ng_dev_info *out);

/* rte_pktmbuf_pool_create with the default data room (2048 + headroom); NULL with *err set. */
void *ng_pool_create(const char *name, uint32_t n, uint32_t cache, int32_t socket, int *err);
void ng_pool_free(void *pool);

/* Configures `rxq` RX and `txq` TX queues (RSS over IP/TCP/UDP when rxq > 1 and the device
 * hashes), sets up the queues with *rx_desc / *tx_desc descriptors (adjusted to the device's
 * limits and written back), starts the port, enables all-multicast and, when asked,
 * promiscuous mode. Returns 0 or a negative errno; on failure the port is left stopped. */
int ng_port_start(uint16_t port, uint16_t rxq, uint16_t txq, uint16_t *rx_desc,
		  uint16_t *tx_desc, void *pool, int promisc);
/* rte_eth_dev_stop + rte_eth_dev_close. */
void ng_port_close(uint16_t port);
int ng_port_stats(uint16_t port, struct ng_stats *out);

/* Receives up to `n` frames from queue `q` and copies them, in order, into dst[0..k] (each
 * `cap` bytes), writing their lengths to lens[0..k]; returns k. Frames longer than `cap` are
 * dropped and added to *dropped. Every rte_mbuf is freed before returning. */
uint16_t ng_rx(uint16_t port, uint16_t q, uint8_t *const *dst, uint16_t cap, uint16_t *lens,
	       uint16_t n, uint64_t *dropped);

/* Copies frames src[0..n] (lens[i] bytes each) into mbufs from `pool` and sends them with one
 * rte_eth_tx_burst on queue `q`; returns how many the device took (a prefix). The rest, and
 * all of them when `pool` is empty, are not sent; their mbufs are freed here. */
uint16_t ng_tx(uint16_t port, uint16_t q, void *pool, const uint8_t *const *src,
	       const uint16_t *lens, uint16_t n);

#endif
