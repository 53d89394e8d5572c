//! Crashes between two outputs of one step — after a vote was persisted but
//! before it was sent, after a commit but before its checkpoint — at every
//! output index over a range of steps, then a restart from the WAL. No
//! honest validator may ever sign two different things for one
//! `(view, seq, phase)`, and the network must recover.

use phalanx_testnet::sim::Scenario;

const SEED: u64 = 61;
/// Steps in this window are crash candidates.
const WINDOW_MS: (u64, u64) = (800, 2_500);
/// Steps per (validator, output index).
const STEPS_PER_INDEX: usize = 3;
const HEIGHT: u64 = 15;

fn base() -> Scenario {
    Scenario::new(4)
        .seed(SEED)
        .load(20.0, 3_000)
        .until_height(HEIGHT)
}

#[test]
fn crash_at_every_output_index() {
    // A crash-free run of the same seed shows every step and how many
    // outputs it had; runs are identical up to the crash.
    let clean = base().with(|c| c.record_steps = true).run();
    clean.assert_safe_and_live(HEIGHT);
    let mut failures = Vec::new();
    let mut runs = 0;
    let mut hits = 0;
    for node in [0u16, 1] {
        let steps: Vec<(u64, usize)> = clean
            .steps
            .iter()
            .filter(|(t, n, _)| *n == node && (WINDOW_MS.0..WINDOW_MS.1).contains(t))
            .map(|(t, _, outputs)| (*t, *outputs))
            .collect();
        let widest = steps.iter().map(|(_, o)| *o).max().unwrap_or(0);
        for k in 0..widest.min(16) {
            // Steps where output k exists: the first, middle and last.
            let candidates: Vec<u64> = steps
                .iter()
                .filter(|(_, o)| *o > k)
                .map(|(t, _)| *t)
                .collect();
            let picks = [0, candidates.len() / 2, candidates.len() - 1];
            let mut picked: Vec<u64> = picks.iter().map(|i| candidates[*i]).collect();
            picked.dedup();
            for at_ms in picked.into_iter().take(STEPS_PER_INDEX) {
                let report = base()
                    .crash_after_outputs(node, at_ms, k, at_ms + 500)
                    .run();
                runs += 1;
                hits += report.stats.mid_output_crashes;
                if !report.ok() || report.min_honest_height() < HEIGHT {
                    failures.push(format!(
                        "r{node} crashes before output {k} of its step at {at_ms} ms:\n{}",
                        report.describe()
                    ));
                }
            }
        }
    }
    assert!(runs >= 20, "only {runs} crash points");
    assert_eq!(hits, runs, "every crash point is hit");
    assert!(
        failures.is_empty(),
        "{} of {runs} runs failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
