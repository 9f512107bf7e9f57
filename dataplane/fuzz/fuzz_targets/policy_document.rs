#![no_main]
// Body shared with the test that replays the corpus: see dataplane::policy::fuzzing::document.
libfuzzer_sys::fuzz_target!(|data: &[u8]| dataplane::policy::fuzzing::document(data));
