#![no_main]
// The body is phalanx_fuzz::catch_up_response, also replayed over fuzz/corpus/catch_up_response by
// `cargo test -p phalanx-fuzz`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = phalanx_fuzz::catch_up_response(data);
});
