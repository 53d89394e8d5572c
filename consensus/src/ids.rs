//! Protocol nouns as newtypes, so a view can't be passed as a sequence number.

use serde::{Deserialize, Serialize};
use std::fmt;

macro_rules! id_newtype {
    ($(#[$doc:meta])* $name:ident($inner:ty), $prefix:literal) => {
        $(#[$doc])*
        #[derive(
            Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
        )]
        #[serde(transparent)]
        pub struct $name(pub $inner);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}", self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!($prefix, "{}"), self.0)
            }
        }
    };
}

id_newtype!(
    /// A PBFT view number. The primary of view `v` is validator `v mod n`.
    View(u64),
    "v"
);
id_newtype!(
    /// A sequence number: the height of the block the batch becomes.
    SeqNum(u64),
    "#"
);
id_newtype!(
    /// A validator's position in the genesis validator list.
    ValidatorIndex(u16),
    "r"
);

impl View {
    pub fn next(self) -> View {
        View(self.0 + 1)
    }
}

impl SeqNum {
    pub fn next(self) -> SeqNum {
        SeqNum(self.0 + 1)
    }
}

impl ValidatorIndex {
    pub fn as_usize(self) -> usize {
        self.0 as usize
    }
}
