//! The prefetch hints take any address: the flow table and the event queue
//! hand them computed addresses, which must never fault, and they must leave
//! the memory they name as it was.

#[test]
fn prefetches_never_fault_and_never_write() {
    let data: Vec<u64> = (0..64).collect();
    for p in [
        std::ptr::null::<u8>(),
        std::ptr::without_provenance::<u8>(1),
        std::ptr::without_provenance::<u8>(usize::MAX),
        std::ptr::without_provenance::<u8>(usize::MAX - 63),
        std::ptr::without_provenance::<u8>(0x8000_0000_0000), // not canonical on x86-64
        data.as_ptr() as *const u8,
    ] {
        dpdk_bindings::prefetch(p);
        dpdk_bindings::prefetch_write(p);
    }
    for (i, p) in data.iter().enumerate() {
        dpdk_bindings::prefetch_write(p);
        assert_eq!(*p, i as u64);
    }
}
