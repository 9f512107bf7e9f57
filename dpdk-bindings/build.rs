//! Generates bindings to the system DPDK and compiles the inline-function shim.
//!
//! DPDK is found through `pkg-config libdpdk` (Debian's 22.11). Linking is
//! shared: the EAL then loads the PMDs from its plugin directory by itself, so
//! no driver is named here. The shim is compiled with pkg-config's own cflags
//! (`-include rte_config.h -march=...`) so the inlined bodies match the ABI of
//! the installed libraries.

use std::env;
use std::path::PathBuf;

const INSTALL_HINT: &str = "install it with: apt-get install -y dpdk dpdk-dev libdpdk-dev pkg-config \
     (or run tools/setup.sh, which installs everything the gateway needs)";

fn main() {
    println!("cargo:rerun-if-changed=csrc/wrapper.h");
    println!("cargo:rerun-if-changed=csrc/shim.h");
    println!("cargo:rerun-if-changed=csrc/shim.c");
    println!("cargo:rerun-if-env-changed=PKG_CONFIG_PATH");

    let dpdk = match pkg_config::Config::new().atleast_version("22.11").cargo_metadata(true).probe("libdpdk") {
        Ok(lib) => lib,
        Err(e) => panic!("\n\nDPDK (libdpdk >= 22.11) was not found by pkg-config: {e}\n{INSTALL_HINT}\n\n"),
    };

    // pkg-config's cflags, verbatim: include paths, `-include rte_config.h`, `-march`.
    let cflags: Vec<String> = match std::process::Command::new("pkg-config").args(["--cflags", "libdpdk"]).output() {
        Ok(out) if out.status.success() => {
            String::from_utf8_lossy(&out.stdout).split_whitespace().map(str::to_owned).collect()
        }
        _ => panic!("\n\n`pkg-config --cflags libdpdk` failed; {INSTALL_HINT}\n\n"),
    };

    let mut shim = cc::Build::new();
    shim.file("csrc/shim.c").include("csrc").opt_level(3).warnings(true);
    for path in &dpdk.include_paths {
        shim.include(path);
    }
    let mut i = 0;
    while i < cflags.len() {
        // `-include <file>` is two tokens; -I paths are already added above.
        if cflags[i] == "-include" && i + 1 < cflags.len() {
            shim.flag("-include").flag(&cflags[i + 1]);
            i += 2;
            continue;
        }
        if !cflags[i].starts_with("-I") {
            shim.flag(&cflags[i]);
        }
        i += 1;
    }
    shim.compile("gwshim");

    check_libclang();
    let out = PathBuf::from(env::var("OUT_DIR").expect("OUT_DIR is set by cargo"));
    let mut builder = bindgen::Builder::default()
        .header("csrc/wrapper.h")
        .clang_args(cflags.iter().filter(|f| !f.starts_with("-march")))
        .clang_arg("-Icsrc")
        .allowlist_function("rte_.*|gw_.*")
        .allowlist_type("rte_.*")
        .allowlist_var("RTE_.*|RING_F_.*")
        // Packed-and-aligned structs bindgen cannot lay out (rust-bindgen#1538).
        .opaque_type("rte_arp_hdr|rte_arp_ipv4|rte_l2tpv2_.*|rte_ecpri_.*|rte_gtp_.*|rte_ether_addr_.*")
        .blocklist_function("rte_.*_va|rte_vlog")
        .derive_default(true)
        .layout_tests(false)
        .generate_comments(false)
        .prepend_enum_name(false)
        .parse_callbacks(Box::new(bindgen::CargoCallbacks::new()));
    if let Ok(extra) = env::var("DPDK_BINDGEN_EXTRA_CLANG_ARGS") {
        builder = builder.clang_args(extra.split_whitespace());
    }
    let bindings = builder
        .generate()
        .unwrap_or_else(|e| panic!("\n\nbindgen could not generate the DPDK bindings: {e}\n{INSTALL_HINT}\n\n"));
    bindings.write_to_file(out.join("bindings.rs")).expect("writing bindings.rs into OUT_DIR");
}

/// bindgen loads libclang at run time and its own failure is a bare panic; say
/// what to install instead.
fn check_libclang() {
    if env::var_os("LIBCLANG_PATH").is_some() {
        return;
    }
    let dirs = ["/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib", "/usr/local/lib"];
    let found = dirs.iter().any(|d| has_libclang(std::path::Path::new(d)))
        || std::fs::read_dir("/usr/lib")
            .map(|rd| {
                rd.flatten().any(|e| {
                    e.file_name().to_string_lossy().starts_with("llvm-") && has_libclang(&e.path().join("lib"))
                })
            })
            .unwrap_or(false);
    if !found {
        panic!(
            "\n\nlibclang was not found; bindgen needs it to read DPDK's headers.\n\
             install it with: apt-get install -y libclang-dev (or set LIBCLANG_PATH)\n\n"
        );
    }
}

fn has_libclang(dir: &std::path::Path) -> bool {
    std::fs::read_dir(dir)
        .map(|rd| rd.flatten().any(|e| e.file_name().to_string_lossy().starts_with("libclang")))
        .unwrap_or(false)
}
