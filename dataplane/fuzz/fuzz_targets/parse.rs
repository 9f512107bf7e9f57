#![no_main]
// Body shared with the unit test that replays the corpus: see dataplane::wire::fuzzing::parse.
libfuzzer_sys::fuzz_target!(|data: &[u8]| dataplane::wire::fuzzing::parse(data));
