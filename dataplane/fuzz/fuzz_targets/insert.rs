#![no_main]
// Body shared with the unit test that replays the corpus: see dataplane::identity::fuzzing::insert.
libfuzzer_sys::fuzz_target!(|data: &[u8]| dataplane::identity::fuzzing::insert(data));
