//! The simulated network: per-message delay (so reordering), loss and
//! duplication, and partitions. It only decides what arrives when; the
//! event queue carries the bytes.

use super::config::NetConfig;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// An active partition: the group of each validator (`None`: cut off).
#[derive(Clone, Debug)]
struct Partition {
    id: usize,
    group_of: Vec<Option<usize>>,
}

/// Extra loss, duplication and delay while a turbulence fault is active.
#[derive(Clone, Debug)]
struct Turbulence {
    id: usize,
    loss: f64,
    duplicate: f64,
    delay_ms_max: u64,
}

/// What happens to one message on one link.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fate {
    /// Cut by a partition.
    Cut,
    Lost,
    /// Arrives after each of these delays (two for a duplicate).
    Arrives(Vec<u64>),
}

pub struct Network {
    base: NetConfig,
    n: usize,
    partitions: Vec<Partition>,
    turbulence: Vec<Turbulence>,
}

impl Network {
    pub fn new(base: NetConfig, n: usize) -> Network {
        Network {
            base,
            n,
            partitions: Vec::new(),
            turbulence: Vec::new(),
        }
    }

    pub fn start_partition(&mut self, id: usize, groups: &[Vec<u16>]) {
        let mut group_of = vec![None; self.n];
        for (g, members) in groups.iter().enumerate() {
            for m in members {
                if let Some(slot) = group_of.get_mut(*m as usize) {
                    *slot = Some(g);
                }
            }
        }
        self.partitions.push(Partition { id, group_of });
    }

    pub fn heal_partition(&mut self, id: usize) {
        self.partitions.retain(|p| p.id != id);
    }

    pub fn start_turbulence(&mut self, id: usize, loss: f64, duplicate: f64, delay_ms_max: u64) {
        self.turbulence.push(Turbulence {
            id,
            loss,
            duplicate,
            delay_ms_max,
        });
    }

    pub fn end_turbulence(&mut self, id: usize) {
        self.turbulence.retain(|t| t.id != id);
    }

    /// Whether an active partition separates `a` and `b`.
    pub fn is_cut(&self, a: u16, b: u16) -> bool {
        if a == b {
            return false;
        }
        self.partitions.iter().any(|p| {
            let ga = p.group_of.get(a as usize).copied().flatten();
            let gb = p.group_of.get(b as usize).copied().flatten();
            ga.is_none() || gb.is_none() || ga != gb
        })
    }

    /// Decides the fate of one message from `from` to `to`. Draws from the
    /// RNG in a fixed order, so runs replay.
    pub fn fate(&self, rng: &mut ChaCha8Rng, from: u16, to: u16) -> Fate {
        if self.is_cut(from, to) {
            return Fate::Cut;
        }
        let loss = self
            .turbulence
            .iter()
            .map(|t| t.loss)
            .fold(self.base.loss, f64::max);
        let duplicate = self
            .turbulence
            .iter()
            .map(|t| t.duplicate)
            .fold(self.base.duplicate, f64::max);
        let delay_max = self
            .turbulence
            .iter()
            .map(|t| t.delay_ms_max)
            .fold(self.base.delay_ms_max, u64::max);
        if loss > 0.0 && rng.gen_bool(loss.min(1.0)) {
            return Fate::Lost;
        }
        let delay_min = self.base.delay_ms_min.min(delay_max);
        let mut delays = vec![rng.gen_range(delay_min..=delay_max)];
        if duplicate > 0.0 && rng.gen_bool(duplicate.min(1.0)) {
            delays.push(rng.gen_range(delay_min..=delay_max));
        }
        Fate::Arrives(delays)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn partitions_cut_across_groups_only() {
        let mut net = Network::new(NetConfig::default(), 4);
        net.start_partition(0, &[vec![0], vec![1, 2]]);
        assert!(net.is_cut(0, 1));
        assert!(!net.is_cut(1, 2));
        assert!(net.is_cut(3, 2), "r3 is in no group: cut off");
        net.heal_partition(0);
        assert!(!net.is_cut(0, 3));
    }

    #[test]
    fn delays_stay_in_range() {
        let net = Network::new(NetConfig::default(), 2);
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        for _ in 0..1000 {
            match net.fate(&mut rng, 0, 1) {
                Fate::Arrives(d) => assert!(d.iter().all(|d| (1..=20).contains(d))),
                other => panic!("clean network: {other:?}"),
            }
        }
    }
}
