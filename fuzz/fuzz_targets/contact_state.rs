#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| leadscore_fuzz::check_contact_state(data));
