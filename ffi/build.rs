//! Builds the DPDK shim (`dpdk/shim.c`) and links libdpdk, with the `dpdk` feature only; the
//! compiler and linker flags come from `pkg-config libdpdk`. Without the feature this does
//! nothing and no DPDK is needed.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    #[cfg(feature = "dpdk")]
    dpdk::build();
}

#[cfg(feature = "dpdk")]
mod dpdk {
    use std::process::Command;

    /// The DPDK release the shim is written against (the one in Debian 12).
    const DPDK_MIN: &str = "22.11";

    fn pkg_config(args: &[&str]) -> String {
        let out = Command::new("pkg-config")
            .args(args)
            .arg("libdpdk")
            .output()
            .unwrap_or_else(|e| {
                panic!(
                    "the dpdk feature needs pkg-config and libdpdk-dev \
                     (apt-get install pkg-config libdpdk-dev): cannot run pkg-config: {e}"
                )
            });
        if !out.status.success() {
            panic!(
                "the dpdk feature needs libdpdk-dev >= {DPDK_MIN} (apt-get install libdpdk-dev): \
                 pkg-config {args:?} libdpdk: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        String::from_utf8(out.stdout).expect("pkg-config prints UTF-8")
    }

    pub fn build() {
        println!("cargo:rerun-if-changed=dpdk/shim.c");
        println!("cargo:rerun-if-changed=dpdk/shim.h");
        println!("cargo:rerun-if-env-changed=PKG_CONFIG_PATH");
        pkg_config(&[&format!("--atleast-version={DPDK_MIN}")]);

        let mut build = cc::Build::new();
        build
            .file("dpdk/shim.c")
            .warnings(true)
            .extra_warnings(true);
        // DPDK's cflags: include paths, `-include rte_config.h` and the -march it was built for.
        for flag in pkg_config(&["--cflags"]).split_whitespace() {
            build.flag(flag);
        }
        build.compile("nodegate_dpdk_shim");

        // The shim's static library comes first on the link line (cc printed it), then DPDK.
        for flag in pkg_config(&["--libs"]).split_whitespace() {
            if let Some(lib) = flag.strip_prefix("-l") {
                println!("cargo:rustc-link-lib=dylib={lib}");
            } else if let Some(dir) = flag.strip_prefix("-L") {
                println!("cargo:rustc-link-search=native={dir}");
            }
        }
    }
}
