//! `phalanx-wallet`: keys, balances, transfers and finality proofs for a
//! Phalanx account. Everything is in [`phalanx_node::wallet`].

fn main() -> std::process::ExitCode {
    let code = phalanx_node::wallet::main_with_args(std::env::args_os().collect());
    std::process::ExitCode::from(code)
}
