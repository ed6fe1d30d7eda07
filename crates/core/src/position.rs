//! Positions as sources write them: a serde type turned into the small JSON of
//! [`Next::More`] and read back from [`crate::ReadRequest::position`], with the one error a
//! position the connector did not write gets (`Permanent`, naming the stream, suggesting
//! `dovetail reset`). Every connector uses these instead of its own copy (`cargo xtask tidy`
//! refuses one under `connectors/`).
//!
//! ```
//! use dovetail_core::{Next, position};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Debug, PartialEq, Serialize, Deserialize)]
//! #[serde(deny_unknown_fields)]
//! struct Position { page: u32 }
//!
//! let Next::More(v) = position::encode(&Position { page: 2 }).unwrap() else { unreachable!() };
//! assert_eq!(position::decode::<Position>("items", &v).unwrap(), Position { page: 2 });
//! let e = position::decode::<Position>("items", &serde_json::json!({ "cursor": "x" })).unwrap_err();
//! assert!(e.to_string().contains("is not one this connector wrote"));
//! ```

use std::fmt::Display;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::connector::Next;
use crate::error::Error;

/// `position` as the JSON the engine stores: `Next::More(json)`. Failing to encode is an
/// internal error (a position type that does not serialize is a bug).
pub fn encode<T: Serialize>(position: &T) -> Result<Next, Error> {
    serde_json::to_value(position)
        .map(Next::More)
        .map_err(|e| Error::internal("cannot encode a position").with_source(e))
}

/// The position the engine handed back for `stream`, decoded as `T`; JSON that is not a
/// `T` is [`not_ours`], with serde's reason.
pub fn decode<T: DeserializeOwned>(stream: &str, position: &Value) -> Result<T, Error> {
    serde_json::from_value(position.clone()).map_err(|e| not_ours(stream, Some(position), e))
}

/// The error for a checkpoint position of `stream` this connector did not write (`why`: what
/// is wrong with it): `Permanent`, so the engine reports a corrupt checkpoint instead of
/// guessing, and the message says how to start over.
pub fn not_ours(stream: &str, position: Option<&Value>, why: impl Display) -> Error {
    let v = position.map(Value::to_string).unwrap_or_default();
    Error::permanent(format!(
        "stream `{stream}`: the checkpoint position {v} is not one this connector wrote ({why}); run `dovetail reset` for the stream to start over"
    ))
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;
    use serde_json::json;

    use super::*;
    use crate::ErrorKind;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Pos {
        repo: Option<String>,
        page: u32,
    }

    #[test]
    fn a_position_round_trips_as_json() {
        let p = Pos { repo: Some("o/r".into()), page: 3 };
        let Next::More(v) = encode(&p).unwrap() else { panic!("not More") };
        assert_eq!(v, json!({ "repo": "o/r", "page": 3 }));
        assert_eq!(decode::<Pos>("s", &v).unwrap(), p);
    }

    /// The text connectors reported before the helper existed, word for word.
    #[test]
    fn a_foreign_position_is_permanent_and_says_how_to_start_over() {
        let v = json!({ "page": 1, "extra": true });
        let e = decode::<Pos>("issues", &v).unwrap_err();
        assert_eq!(*e.kind(), ErrorKind::Permanent);
        assert_eq!(
            e.message(),
            "stream `issues`: the checkpoint position {\"extra\":true,\"page\":1} is not one this connector wrote \
             (unknown field `extra`, expected `repo` or `page`); run `dovetail reset` for the stream to start over"
        );
        let e = not_ours("issues", None, "it names no repository");
        assert_eq!(*e.kind(), ErrorKind::Permanent);
        assert_eq!(
            e.message(),
            "stream `issues`: the checkpoint position  is not one this connector wrote (it names no repository); \
             run `dovetail reset` for the stream to start over"
        );
    }

    #[test]
    fn a_position_that_does_not_serialize_is_internal() {
        struct Broken;
        impl Serialize for Broken {
            fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
                Err(serde::ser::Error::custom("no"))
            }
        }
        let e = encode(&Broken).unwrap_err();
        assert_eq!(
            (e.kind().clone(), e.message().to_owned()),
            (ErrorKind::Internal, "cannot encode a position".to_owned())
        );
    }
}
