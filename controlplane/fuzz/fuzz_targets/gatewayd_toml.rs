#![no_main]
// Body shared with the test that replays the corpus: see controlplane::fuzzing::gatewayd_toml.
libfuzzer_sys::fuzz_target!(|data: &[u8]| controlplane::fuzzing::gatewayd_toml(data));
