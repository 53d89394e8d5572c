//! The fixed chain every target checks against: four validators with
//! deterministic keys, a small watermark window (so that view changes in the
//! seeds stay small) and four funded clients.

use phalanx_consensus::{
    Config, ConsensusParams, Genesis, GenesisAccount, GenesisValidator, Horizon, SeqNum,
    VerifyContext, View,
};
use phalanx_crypto::Keypair;
use std::sync::OnceLock;

pub const CHAIN: &str = "phalanx-fuzz";

pub struct Fixture {
    /// The validators' keys, index order.
    pub keys: Vec<Keypair>,
    /// Funded client keys.
    pub clients: Vec<Keypair>,
    pub genesis: Genesis,
    pub cfg: Config,
}

impl Fixture {
    /// The verifier's context: no horizon (a replica that knows nothing
    /// about where it is), so only the message itself decides.
    pub fn ctx(&self) -> VerifyContext<'_> {
        VerifyContext {
            chain_id: CHAIN,
            validators: &self.cfg.validators,
            window: self.cfg.window,
            horizon: None,
            known_good_txs: None,
        }
    }

    /// The context of a replica at view 0 with nothing stable yet.
    pub fn ctx_at_genesis(&self) -> VerifyContext<'_> {
        VerifyContext {
            horizon: Some(Horizon {
                view: View(0),
                low: SeqNum(0),
            }),
            ..self.ctx()
        }
    }
}

fn build() -> Fixture {
    let keys: Vec<Keypair> = (0..4)
        .map(|i| Keypair::insecure_from_label(&format!("fuzz-validator-{i}")))
        .collect();
    let clients: Vec<Keypair> = (0..4)
        .map(|i| Keypair::insecure_from_label(&format!("fuzz-client-{i}")))
        .collect();
    let genesis = Genesis {
        chain_id: CHAIN.into(),
        genesis_time_ms: 0,
        test_network: true,
        validators: keys
            .iter()
            .enumerate()
            .map(|(i, k)| GenesisValidator {
                name: format!("v{i}"),
                public_key: k.public(),
                p2p_address: format!("/ip4/127.0.0.1/tcp/{}", 26000 + i),
            })
            .collect(),
        consensus: ConsensusParams {
            checkpoint_interval: 4,
            window: 8,
            batch_txs_max: 4,
            batch_delay_ms: 5,
            pipeline_max: 4,
            propose_timeout_ms: 500,
            view_timeout_ms: 1000,
            view_timeout_ms_max: 8000,
            retransmit_ms: 200,
            ..ConsensusParams::for_validators(4)
        },
        accounts: clients
            .iter()
            .map(|c| GenesisAccount {
                address: c.address(),
                balance: 1_000_000,
            })
            .collect(),
    };
    let cfg = genesis.consensus_config();
    cfg.validate()
        .expect("the fixture's consensus config is valid");
    Fixture {
        keys,
        clients,
        genesis,
        cfg,
    }
}

/// The fixture, built once per process.
pub fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(build)
}
