#![no_main]
// The body is phalanx_fuzz::api_transaction, also replayed over fuzz/corpus/api_transaction by
// `cargo test -p phalanx-fuzz`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = phalanx_fuzz::api_transaction(data);
});
