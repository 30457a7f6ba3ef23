//! Response statuses and the text memcached sends with each error.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    NoError,
    KeyNotFound,
    KeyExists,
    ValueTooLarge,
    InvalidArguments,
    ItemNotStored,
    NonNumeric,
    AuthError,
    UnknownCommand,
    OutOfMemory,
    NotSupported,
    InternalError,
    Busy,
    TemporaryFailure,
    /// Couchbase's 0xa0..0xa3 for durable writes.
    DurabilityInvalidLevel,
    DurabilityImpossible,
    SyncWriteAmbiguous,
    Unknown(u16),
}

impl Status {
    pub fn from_u16(v: u16) -> Status {
        use Status::*;
        match v {
            0x0000 => NoError,
            0x0001 => KeyNotFound,
            0x0002 => KeyExists,
            0x0003 => ValueTooLarge,
            0x0004 => InvalidArguments,
            0x0005 => ItemNotStored,
            0x0006 => NonNumeric,
            0x0020 => AuthError,
            0x0081 => UnknownCommand,
            0x0082 => OutOfMemory,
            0x0083 => NotSupported,
            0x0084 => InternalError,
            0x0085 => Busy,
            0x0086 => TemporaryFailure,
            0x00a0 => DurabilityInvalidLevel,
            0x00a1 => DurabilityImpossible,
            0x00a3 => SyncWriteAmbiguous,
            other => Unknown(other),
        }
    }

    pub fn to_u16(self) -> u16 {
        use Status::*;
        match self {
            NoError => 0x0000,
            KeyNotFound => 0x0001,
            KeyExists => 0x0002,
            ValueTooLarge => 0x0003,
            InvalidArguments => 0x0004,
            ItemNotStored => 0x0005,
            NonNumeric => 0x0006,
            AuthError => 0x0020,
            UnknownCommand => 0x0081,
            OutOfMemory => 0x0082,
            NotSupported => 0x0083,
            InternalError => 0x0084,
            Busy => 0x0085,
            TemporaryFailure => 0x0086,
            DurabilityInvalidLevel => 0x00a0,
            DurabilityImpossible => 0x00a1,
            SyncWriteAmbiguous => 0x00a3,
            Unknown(v) => v,
        }
    }

    /// The body memcached 1.6 sends with an error status (`write_bin_error`).
    pub fn message(self) -> &'static str {
        use Status::*;
        match self {
            NoError => "",
            KeyNotFound => "Not found",
            KeyExists => "Data exists for key.",
            ValueTooLarge => "Too large.",
            InvalidArguments => "Invalid arguments",
            ItemNotStored => "Not stored.",
            NonNumeric => "Non-numeric server-side value for incr or decr",
            AuthError => "Auth failure.",
            UnknownCommand => "Unknown command",
            OutOfMemory => "Out of memory",
            NotSupported => "Not supported",
            InternalError => "Internal error",
            Busy => "Busy",
            TemporaryFailure => "Temporary failure",
            DurabilityInvalidLevel => "Invalid durability level",
            DurabilityImpossible => "Durability impossible",
            SyncWriteAmbiguous => "Sync write ambiguous",
            Unknown(_) => "UNHANDLED ERROR",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_value_round_trips() {
        for v in 0..=0x200u16 {
            assert_eq!(Status::from_u16(v).to_u16(), v);
        }
    }

    #[test]
    fn memcached_numbers_and_texts() {
        assert_eq!(Status::KeyExists.to_u16(), 2);
        assert_eq!(Status::NonNumeric.to_u16(), 6);
        assert_eq!(Status::OutOfMemory.to_u16(), 0x82);
        assert_eq!(Status::KeyNotFound.message(), "Not found");
        assert_eq!(Status::ValueTooLarge.message(), "Too large.");
    }
}
