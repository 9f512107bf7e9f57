#![no_main]
// Body shared with the test that replays the corpus: see dataplane::dns::fuzzing::parse.
libfuzzer_sys::fuzz_target!(|data: &[u8]| dataplane::dns::fuzzing::parse(data));
