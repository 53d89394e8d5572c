#![no_main]
// The body is phalanx_fuzz::consensus_message, also replayed over fuzz/corpus/consensus_message by
// `cargo test -p phalanx-fuzz`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = phalanx_fuzz::consensus_message(data);
});
