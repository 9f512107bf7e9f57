#![no_main]
// Body shared with the unit test that replays the corpus: see dataplane::identity::fuzzing::round_trip.
libfuzzer_sys::fuzz_target!(|data: &[u8]| dataplane::identity::fuzzing::round_trip(data));
