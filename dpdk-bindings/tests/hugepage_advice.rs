//! `advise_hugepages` on memory not yet written: the kernel backs it with
//! transparent huge pages when THP is enabled (`madvise` or `always`).

fn thp_mode() -> String {
    let s = std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled").unwrap_or_default();
    s.split_whitespace().find(|w| w.starts_with('[')).unwrap_or("").trim_matches(['[', ']']).to_string()
}

/// Kilobytes of anonymous huge pages backing the mapping that holds `addr`.
fn huge_kb_at(addr: usize) -> u64 {
    let smaps = std::fs::read_to_string("/proc/self/smaps").expect("smaps");
    let mut inside = false;
    for line in smaps.lines() {
        if let Some((range, _)) = line.split_once(' ') {
            if let Some((a, b)) = range.split_once('-') {
                if let (Ok(a), Ok(b)) = (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16)) {
                    inside = (a..b).contains(&addr);
                    continue;
                }
            }
        }
        if inside {
            if let Some(v) = line.strip_prefix("AnonHugePages:") {
                return v.trim().trim_end_matches("kB").trim().parse().unwrap_or(0);
            }
        }
    }
    0
}

#[test]
fn advised_table_memory_gets_huge_pages() {
    let mode = thp_mode();
    if mode != "madvise" && mode != "always" {
        eprintln!("transparent huge pages are '{mode}' here: nothing to check");
        return;
    }
    let len = 64 << 20;
    let mut v: Vec<u64> = Vec::with_capacity(len / 8);
    dpdk_bindings::advise_hugepages(v.as_ptr() as *const u8, len);
    v.resize(len / 8, 7);
    let kb = huge_kb_at(v.as_ptr() as usize + len / 2);
    // All but the unaligned ends (at most 2 x 2 MiB) should be huge pages;
    // ask for half, leaving room for a kernel short of contiguous memory.
    assert!(kb >= (len as u64 / 1024) / 2, "only {kb} kB of {} kB in huge pages (THP {mode})", len / 1024);
    assert_eq!(v[len / 16], 7);
}
