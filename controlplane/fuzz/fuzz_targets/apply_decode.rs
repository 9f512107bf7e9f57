#![no_main]
// Body shared with the test that replays the corpus: see controlplane::fuzzing::apply_request.
libfuzzer_sys::fuzz_target!(|data: &[u8]| controlplane::fuzzing::apply_request(data));
