//! Replays the committed corpus `fuzz/corpus/<target>/` through each
//! target's body, deterministically: no input may panic, `ok-*` seeds must
//! be accepted and `bad-*` seeds rejected; `any-*` seeds and `crash-*`
//! files (regressions for crashes the fuzzer found) need only not panic.
//! `open-crash-*` files are crashes found and not yet fixed (in a crate
//! this one does not own): they must still panic, so that the fix shows up
//! here and the file is renamed `crash-*`, a regression from then on.

use phalanx_fuzz::{Verdict, TARGETS};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;

fn corpus_dir(target: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(target)
}

fn replay(target: &str) {
    let body = phalanx_fuzz::target(target).expect("a known target");
    let dir = corpus_dir(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("a directory entry").path())
        .collect();
    files.sort();
    let (mut ok, mut bad, mut failures) = (0, 0, Vec::new());
    for path in &files {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("?");
        let data = std::fs::read(path).expect("a corpus file reads");
        let outcome = catch_unwind(AssertUnwindSafe(|| body(&data)));
        if let Some(what) = name.strip_prefix("open-crash-") {
            if outcome.is_ok() {
                failures.push(format!(
                    "{name}: no longer panics: fixed? rename it crash-{what}"
                ));
            }
            continue;
        }
        let verdict = match outcome {
            Ok(v) => v,
            Err(_) => {
                failures.push(format!("{name}: panicked"));
                continue;
            }
        };
        if name.starts_with("ok-") {
            ok += 1;
            if verdict != Verdict::Accepted {
                failures.push(format!("{name}: rejected, should be accepted"));
            }
        } else if name.starts_with("bad-") {
            bad += 1;
            if verdict != Verdict::Rejected {
                failures.push(format!("{name}: accepted, should be rejected"));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{target} ({} files; regenerate seeds with `cargo run -p phalanx-fuzz --bin gen-corpus` \
         if an encoding changed on purpose):\n{}",
        files.len(),
        failures.join("\n")
    );
    assert!(
        ok >= 5 && bad >= 3,
        "{target}: {ok} ok and {bad} bad seeds; the corpus is missing"
    );
}

macro_rules! replay_tests {
    ($($name:ident),* $(,)?) => {
        $(#[test]
        fn $name() {
            replay(stringify!($name));
        })*

        /// Every target has its replay test above.
        #[test]
        fn every_target_is_replayed() {
            let replayed = [$(stringify!($name)),*];
            for (name, _) in TARGETS {
                assert!(replayed.contains(&name), "{name} has no replay test");
            }
        }
    };
}

replay_tests!(
    consensus_message,
    catch_up_response,
    api_transaction,
    api_batch,
    key_file,
    genesis,
    node_config,
    merkle_proof,
    stored_record,
);

/// The committed seeds are what `gen-corpus` writes today: when an
/// encoding changes, the seeds are regenerated rather than left to rot.
#[test]
fn committed_seeds_are_current() {
    let mut stale = Vec::new();
    for (target, seeds) in phalanx_fuzz::seeds::seeds() {
        for (name, bytes) in seeds {
            let path = corpus_dir(target).join(&name);
            if std::fs::read(&path).ok().as_deref() != Some(&bytes[..]) {
                stale.push(format!("{target}/{name}"));
            }
        }
    }
    assert!(
        stale.is_empty(),
        "stale or missing seeds (run `cargo run -p phalanx-fuzz --bin gen-corpus`): {stale:?}"
    );
}
