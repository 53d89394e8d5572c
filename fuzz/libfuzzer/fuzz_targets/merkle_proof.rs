#![no_main]
// The body is phalanx_fuzz::merkle_proof, also replayed over fuzz/corpus/merkle_proof by
// `cargo test -p phalanx-fuzz`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = phalanx_fuzz::merkle_proof(data);
});
