/*
 * nodegate's DPDK shim (see shim.h). The inline fast-path functions of DPDK (rx/tx burst,
 * mbuf alloc/read/append) cannot be called from Rust without a C body, and the configuration
 * structs are large and version-specific; this file keeps both on the C side.
 */
#include <errno.h>
#include <string.h>

#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_ethdev.h>
#include <rte_lcore.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>

#include "shim.h"

/* Most frames one ng_rx / ng_tx call moves (callers pass bursts of 32). */
#define NG_BURST_MAX 64

/* The Rust declarations mirror these sizes (ffi/src/dpdk.rs checks them too). */
_Static_assert(sizeof(struct ng_dev_info) == 48, "struct ng_dev_info layout");
_Static_assert(sizeof(struct ng_stats) == 48, "struct ng_stats layout");

int ng_eal_init(int argc, char **argv)
{
	int ret = rte_eal_init(argc, argv);
	return ret < 0 ? -rte_errno : ret;
}

int ng_eal_cleanup(void)
{
	return rte_eal_cleanup();
}

int ng_lcore_id(void)
{
	unsigned int id = rte_lcore_id();

	return id == LCORE_ID_ANY ? -1 : (int)id;
}

int ng_thread_register(void)
{
	return rte_thread_register() == 0 ? 0 : -rte_errno;
}

void ng_thread_unregister(void)
{
	rte_thread_unregister();
}

const char *ng_strerror(int errnum)
{
	return rte_strerror(errnum);
}

int ng_dev_info(const char *name, struct ng_dev_info *out)
{
	uint16_t port;
	struct rte_eth_dev_info info;
	struct rte_ether_addr mac;
	int ret;

	memset(out, 0, sizeof(*out));
	ret = rte_eth_dev_get_port_by_name(name, &port);
	if (ret != 0)
		return ret < 0 ? ret : -ENODEV;
	ret = rte_eth_dev_info_get(port, &info);
	if (ret != 0)
		return ret;
	ret = rte_eth_macaddr_get(port, &mac);
	if (ret != 0)
		return ret;
	out->port_id = port;
	out->max_rx_queues = info.max_rx_queues;
	out->max_tx_queues = info.max_tx_queues;
	memcpy(out->mac, mac.addr_bytes, sizeof(out->mac));
	out->socket_id = rte_eth_dev_socket_id(port);
	if (info.driver_name != NULL) {
		strncpy(out->driver, info.driver_name, sizeof(out->driver) - 1);
		out->driver[sizeof(out->driver) - 1] = '\0';
	}
	return 0;
}

void *ng_pool_create(const char *name, uint32_t n, uint32_t cache, int32_t socket, int *err)
{
	struct rte_mempool *mp = rte_pktmbuf_pool_create(name, n, cache, 0,
							 RTE_MBUF_DEFAULT_BUF_SIZE, socket);
	*err = mp == NULL ? -rte_errno : 0;
	return mp;
}

void ng_pool_free(void *pool)
{
	rte_mempool_free(pool);
}

int ng_port_start(uint16_t port, uint16_t rxq, uint16_t txq, uint16_t *rx_desc,
		  uint16_t *tx_desc, void *pool, int promisc)
{
	struct rte_eth_conf conf;
	struct rte_eth_dev_info info;
	int socket = rte_eth_dev_socket_id(port);
	int ret;
	uint16_t q;

	ret = rte_eth_dev_info_get(port, &info);
	if (ret != 0)
		return ret;
	memset(&conf, 0, sizeof(conf));
	if (rxq > 1) {
		uint64_t hf = (RTE_ETH_RSS_IP | RTE_ETH_RSS_TCP | RTE_ETH_RSS_UDP) &
			      info.flow_type_rss_offloads;
		if (hf != 0) {
			conf.rxmode.mq_mode = RTE_ETH_MQ_RX_RSS;
			conf.rx_adv_conf.rss_conf.rss_hf = hf;
		}
	}
	ret = rte_eth_dev_configure(port, rxq, txq, &conf);
	if (ret != 0)
		return ret;
	ret = rte_eth_dev_adjust_nb_rx_tx_desc(port, rx_desc, tx_desc);
	if (ret != 0)
		return ret;
	for (q = 0; q < rxq; q++) {
		ret = rte_eth_rx_queue_setup(port, q, *rx_desc, socket, NULL, pool);
		if (ret != 0)
			return ret;
	}
	for (q = 0; q < txq; q++) {
		ret = rte_eth_tx_queue_setup(port, q, *tx_desc, socket, NULL);
		if (ret != 0)
			return ret;
	}
	ret = rte_eth_dev_start(port);
	if (ret != 0)
		return ret;
	/* Not every device filters multicast; a refusal here is not an error. */
	(void)rte_eth_allmulticast_enable(port);
	if (promisc) {
		ret = rte_eth_promiscuous_enable(port);
		if (ret != 0) {
			(void)rte_eth_dev_stop(port);
			return ret;
		}
	}
	return 0;
}

void ng_port_close(uint16_t port)
{
	(void)rte_eth_dev_stop(port);
	(void)rte_eth_dev_close(port);
}

int ng_port_stats(uint16_t port, struct ng_stats *out)
{
	struct rte_eth_stats s;
	int ret = rte_eth_stats_get(port, &s);

	memset(out, 0, sizeof(*out));
	if (ret != 0)
		return ret;
	out->ipackets = s.ipackets;
	out->opackets = s.opackets;
	out->imissed = s.imissed;
	out->ierrors = s.ierrors;
	out->oerrors = s.oerrors;
	out->rx_nombuf = s.rx_nombuf;
	return 0;
}

uint16_t ng_rx(uint16_t port, uint16_t q, uint8_t *const *dst, uint16_t cap, uint16_t *lens,
	       uint16_t n, uint64_t *dropped)
{
	struct rte_mbuf *pkts[NG_BURST_MAX];
	uint16_t nb, i, k = 0;

	if (n > NG_BURST_MAX)
		n = NG_BURST_MAX;
	nb = rte_eth_rx_burst(port, q, pkts, n);
	for (i = 0; i < nb; i++) {
		uint32_t len = rte_pktmbuf_pkt_len(pkts[i]);
		const void *data;

		if (len > cap) {
			(*dropped)++;
			continue;
		}
		/* Contiguous data is read in place; a chained mbuf is gathered into dst. */
		data = rte_pktmbuf_read(pkts[i], 0, len, dst[k]);
		if (data == NULL) {
			(*dropped)++;
			continue;
		}
		if (data != dst[k])
			memcpy(dst[k], data, len);
		lens[k++] = (uint16_t)len;
	}
	if (nb > 0)
		rte_pktmbuf_free_bulk(pkts, nb);
	return k;
}

uint16_t ng_tx(uint16_t port, uint16_t q, void *pool, const uint8_t *const *src,
	       const uint16_t *lens, uint16_t n)
{
	struct rte_mbuf *pkts[NG_BURST_MAX];
	uint16_t i, k, sent;

	if (n > NG_BURST_MAX)
		n = NG_BURST_MAX;
	if (n == 0 || rte_pktmbuf_alloc_bulk(pool, pkts, n) != 0)
		return 0;
	for (k = 0; k < n; k++) {
		char *p = rte_pktmbuf_append(pkts[k], lens[k]);

		if (p == NULL)
			break;
		memcpy(p, src[k], lens[k]);
	}
	sent = k > 0 ? rte_eth_tx_burst(port, q, pkts, k) : 0;
	for (i = sent; i < n; i++)
		rte_pktmbuf_free(pkts[i]);
	return sent;
}
