//! Binary-protocol opcodes (memcached's `protocol_binary.h`).

/// Every opcode caskade knows by name; anything else is `Unknown` and answered with
/// `UNKNOWN_COMMAND` without closing the connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Opcode {
    Get,
    Set,
    Add,
    Replace,
    Delete,
    Increment,
    Decrement,
    Quit,
    Flush,
    GetQ,
    Noop,
    Version,
    GetK,
    GetKQ,
    Append,
    Prepend,
    Stat,
    SetQ,
    AddQ,
    ReplaceQ,
    DeleteQ,
    IncrementQ,
    DecrementQ,
    QuitQ,
    FlushQ,
    AppendQ,
    PrependQ,
    Verbosity,
    Touch,
    Gat,
    GatQ,
    GatK,
    GatKQ,
    /// Couchbase's GET_REPLICA (0x83): a GET answered from a backup's copy.
    GetReplica,
    SaslListMechs,
    SaslAuth,
    SaslStep,
    Unknown(u8),
}

impl Opcode {
    pub fn from_u8(b: u8) -> Opcode {
        use Opcode::*;
        match b {
            0x00 => Get,
            0x01 => Set,
            0x02 => Add,
            0x03 => Replace,
            0x04 => Delete,
            0x05 => Increment,
            0x06 => Decrement,
            0x07 => Quit,
            0x08 => Flush,
            0x09 => GetQ,
            0x0a => Noop,
            0x0b => Version,
            0x0c => GetK,
            0x0d => GetKQ,
            0x0e => Append,
            0x0f => Prepend,
            0x10 => Stat,
            0x11 => SetQ,
            0x12 => AddQ,
            0x13 => ReplaceQ,
            0x14 => DeleteQ,
            0x15 => IncrementQ,
            0x16 => DecrementQ,
            0x17 => QuitQ,
            0x18 => FlushQ,
            0x19 => AppendQ,
            0x1a => PrependQ,
            0x1b => Verbosity,
            0x1c => Touch,
            0x1d => Gat,
            0x1e => GatQ,
            0x20 => SaslListMechs,
            0x21 => SaslAuth,
            0x22 => SaslStep,
            0x23 => GatK,
            0x24 => GatKQ,
            0x83 => GetReplica,
            other => Unknown(other),
        }
    }

    pub fn to_u8(self) -> u8 {
        use Opcode::*;
        match self {
            Get => 0x00,
            Set => 0x01,
            Add => 0x02,
            Replace => 0x03,
            Delete => 0x04,
            Increment => 0x05,
            Decrement => 0x06,
            Quit => 0x07,
            Flush => 0x08,
            GetQ => 0x09,
            Noop => 0x0a,
            Version => 0x0b,
            GetK => 0x0c,
            GetKQ => 0x0d,
            Append => 0x0e,
            Prepend => 0x0f,
            Stat => 0x10,
            SetQ => 0x11,
            AddQ => 0x12,
            ReplaceQ => 0x13,
            DeleteQ => 0x14,
            IncrementQ => 0x15,
            DecrementQ => 0x16,
            QuitQ => 0x17,
            FlushQ => 0x18,
            AppendQ => 0x19,
            PrependQ => 0x1a,
            Verbosity => 0x1b,
            Touch => 0x1c,
            Gat => 0x1d,
            GatQ => 0x1e,
            SaslListMechs => 0x20,
            SaslAuth => 0x21,
            SaslStep => 0x22,
            GatK => 0x23,
            GatKQ => 0x24,
            GetReplica => 0x83,
            Unknown(b) => b,
        }
    }

    /// Quiet commands send nothing on success (and the GET family nothing on a miss).
    pub fn is_quiet(self) -> bool {
        use Opcode::*;
        matches!(
            self,
            GetQ | GetKQ
                | SetQ
                | AddQ
                | ReplaceQ
                | DeleteQ
                | IncrementQ
                | DecrementQ
                | QuitQ
                | FlushQ
                | AppendQ
                | PrependQ
                | GatQ
                | GatKQ
        )
    }

    /// Commands that change an item: those a durability requirement may go with.
    pub fn is_mutation(self) -> bool {
        use Opcode::*;
        matches!(
            self,
            Set | SetQ | Add | AddQ | Replace | ReplaceQ | Append | AppendQ | Prepend | PrependQ | Delete | DeleteQ
                | Increment | IncrementQ | Decrement | DecrementQ | Touch | Gat | GatQ | GatK | GatKQ
        )
    }

    /// Commands whose successful reply carries the key (GETK, GETKQ, GATK, GATKQ).
    pub fn returns_key(self) -> bool {
        matches!(self, Opcode::GetK | Opcode::GetKQ | Opcode::GatK | Opcode::GatKQ)
    }

    /// The shape of the request's extras, key and value, checked before the body is read.
    pub fn shape(self) -> Shape {
        use Opcode::*;
        match self {
            Get | GetQ | GetK | GetKQ | GetReplica | Delete | DeleteQ => Shape::new(0, Key::Required, false),
            Set | SetQ | Add | AddQ | Replace | ReplaceQ => Shape::new(8, Key::Required, true),
            Append | AppendQ | Prepend | PrependQ => Shape::new(0, Key::Required, true),
            Increment | IncrementQ | Decrement | DecrementQ => {
                Shape::new(20, Key::Required, false)
            }
            Quit | QuitQ | Noop | Version => Shape::new(0, Key::Forbidden, false),
            Flush | FlushQ => Shape {
                extras: Extras::ZeroOr(4),
                key: Key::Forbidden,
                value: false,
            },
            Stat => Shape::new(0, Key::Optional, false),
            Verbosity => Shape::new(4, Key::Forbidden, false),
            Touch | Gat | GatQ | GatK | GatKQ => Shape::new(4, Key::Required, false),
            // Not served: any lengths are accepted, the body is skipped.
            SaslListMechs | SaslAuth | SaslStep | Unknown(_) => Shape {
                extras: Extras::Any,
                key: Key::Optional,
                value: true,
            },
        }
    }
}

/// What a request of one opcode may carry. memcached closes the connection (EINVAL) when a
/// request does not fit its opcode's shape; so does caskade.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shape {
    pub extras: Extras,
    pub key: Key,
    /// Whether bytes may follow the key.
    pub value: bool,
}

impl Shape {
    const fn new(extras: u8, key: Key, value: bool) -> Shape {
        Shape {
            extras: Extras::Exactly(extras),
            key,
            value,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Extras {
    Exactly(u8),
    ZeroOr(u8),
    Any,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Key {
    Required,
    Optional,
    Forbidden,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_byte_round_trips() {
        for b in 0..=255u8 {
            assert_eq!(Opcode::from_u8(b).to_u8(), b);
        }
    }

    #[test]
    fn known_opcodes_have_memcached_numbers() {
        assert_eq!(Opcode::from_u8(0x00), Opcode::Get);
        assert_eq!(Opcode::from_u8(0x0a), Opcode::Noop);
        assert_eq!(Opcode::from_u8(0x1c), Opcode::Touch);
        assert_eq!(Opcode::from_u8(0x24), Opcode::GatKQ);
        assert_eq!(Opcode::from_u8(0x1f), Opcode::Unknown(0x1f));
        assert_eq!(Opcode::from_u8(0x30), Opcode::Unknown(0x30));
    }
}
