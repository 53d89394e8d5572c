//! Scenario manifests (TOML): the network, the workload, the traitors, the
//! perturbations and what must hold at the end.

use phalanx_consensus::traitor::Behaviour;
use serde::Deserialize;
use std::path::Path;

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub network: NetworkSection,
    #[serde(default)]
    pub workload: Workload,
    #[serde(default, rename = "traitor")]
    pub traitors: Vec<TraitorEntry>,
    #[serde(default, rename = "perturbation")]
    pub perturbations: Vec<Perturbation>,
    #[serde(default)]
    pub expect: Expect,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkSection {
    pub validators: usize,
    #[serde(default)]
    pub name: Option<String>,
    /// Node-local consensus timing (ms), e.g. view_timeout_ms = 1000.
    #[serde(default)]
    pub view_timeout_ms: Option<u64>,
    #[serde(default)]
    pub propose_timeout_ms: Option<u64>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Workload {
    /// Offered signed transfers per second, through the HTTP API.
    pub rate: u64,
    /// Funded accounts the workload sends from and to.
    pub accounts: usize,
    pub duration_s: u64,
}

impl Default for Workload {
    fn default() -> Self {
        Workload {
            rate: 200,
            accounts: 50,
            duration_s: 30,
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TraitorEntry {
    pub node: usize,
    pub behaviour: String,
    #[serde(default)]
    pub from_height: Option<u64>,
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Kill,
    Restart,
    Pause,
    Resume,
    Partition,
    Heal,
    Delay,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Perturbation {
    pub at_s: f64,
    pub action: Action,
    #[serde(default)]
    pub nodes: Vec<usize>,
    /// For `partition`: the groups that can still talk within themselves.
    #[serde(default)]
    pub groups: Vec<Vec<usize>>,
    /// For `delay`: milliseconds added to every link of `nodes`.
    #[serde(default)]
    pub ms: u64,
    /// `primary` instead of `nodes`: whoever is primary at that moment.
    #[serde(default)]
    pub target: Option<String>,
}

#[derive(Clone, Debug, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Expect {
    /// Every honest node reaches at least this height.
    pub min_height: u64,
    /// Require evidence against every equivocating traitor that was primary.
    pub evidence: Option<bool>,
    /// Expect the verdict to FAIL (a negative control): the run passes as a
    /// test only if the checkers catch the violation.
    pub verdict_fails: bool,
}

/// A manifest problem, naming the file and what is wrong.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct ManifestError {
    pub path: String,
    pub message: String,
}

impl Manifest {
    pub fn load(path: &Path) -> Result<Manifest, ManifestError> {
        let err = |message: String| ManifestError {
            path: path.display().to_string(),
            message,
        };
        let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        let m: Manifest =
            toml::from_str(&text).map_err(|e| err(e.to_string().replace('\n', " ")))?;
        m.validate().map_err(err)?;
        Ok(m)
    }

    pub fn validate(&self) -> Result<(), String> {
        let n = self.network.validators;
        if n == 0 || n > 64 {
            return Err("network.validators: must be 1 to 64".into());
        }
        for t in &self.traitors {
            if t.node >= n {
                return Err(format!("traitor.node {}: only {n} validators", t.node));
            }
            t.behaviour
                .parse::<Behaviour>()
                .map_err(|e| format!("traitor.behaviour: {e}"))?;
        }
        for p in &self.perturbations {
            if let Some(bad) = p
                .nodes
                .iter()
                .chain(p.groups.iter().flatten())
                .find(|x| **x >= n)
            {
                return Err(format!(
                    "perturbation at {}s: node {bad} does not exist",
                    p.at_s
                ));
            }
            if p.action == Action::Partition && p.groups.is_empty() {
                return Err(format!(
                    "perturbation at {}s: partition needs groups",
                    p.at_s
                ));
            }
            if p.target.as_deref().is_some_and(|t| t != "primary") {
                return Err(format!(
                    "perturbation at {}s: target must be \"primary\"",
                    p.at_s
                ));
            }
            if p.at_s < 0.0 || p.at_s > self.workload.duration_s as f64 + 600.0 {
                return Err(format!("perturbation at {}s: outside the run", p.at_s));
            }
        }
        if self.workload.accounts < 2 {
            return Err("workload.accounts: need at least 2".into());
        }
        Ok(())
    }

    pub fn name(&self, path: &Path) -> String {
        self.network.name.clone().unwrap_or_else(|| {
            path.file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "scenario".into())
        })
    }
}
