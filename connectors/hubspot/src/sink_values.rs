//! Record values as HubSpot's batch writes want them, checked against the properties API
//! before anything is sent: dates as midnight-UTC epoch milliseconds, datetimes as epoch
//! milliseconds, enumerations one of their options (`;`-joined for multi-checkboxes), numbers
//! and booleans as their text (an object or array as its JSON text in a text property), null
//! as `""` (clears the property).

use serde_json::{Map, Value};

use crate::props::{Kind, Kinds};

/// The `properties` of one input: every field of `record` formatted by its property, or why
/// not (naming the property).
pub(crate) fn properties(
    kinds: &Kinds,
    object: &str,
    record: &Map<String, Value>,
) -> Result<Map<String, Value>, String> {
    let mut out = Map::new();
    for (name, value) in record {
        let kind = kinds.get(name).ok_or_else(|| {
            format!("`{name}` is no property of HubSpot's {object} (map it away, or create the property in the portal)")
        })?;
        let text = format(kind, value).map_err(|why| format!("`{name}`: {why}"))?;
        out.insert(name.clone(), Value::String(text));
    }
    Ok(out)
}

/// One value as HubSpot's text.
pub(crate) fn format(kind: &Kind, v: &Value) -> Result<String, String> {
    if v.is_null() {
        return Ok(String::new());
    }
    match kind {
        // An object or array goes as its JSON text (a text property holding a document).
        Kind::Text => Ok(scalar(v).unwrap_or_else(|| v.to_string())),
        Kind::Number => match v {
            Value::Number(n) => Ok(n.to_string()),
            Value::String(s) if s.parse::<f64>().is_ok() => Ok(s.clone()),
            _ => Err(format!("`{}` is not a number", short(v))),
        },
        Kind::Bool => match v {
            Value::Bool(b) => Ok(b.to_string()),
            Value::String(s) if s == "true" || s == "false" => Ok(s.clone()),
            _ => Err(format!("`{}` is not true or false", short(v))),
        },
        Kind::Ids => match v {
            Value::Array(items) => items
                .iter()
                .map(|x| scalar(x).ok_or("is not a list of ids"))
                .collect::<Result<Vec<_>, _>>()
                .map(|ids| ids.join(";"))
                .map_err(str::to_owned),
            other => scalar(other).ok_or_else(|| "is not a list of ids".to_owned()),
        },
        Kind::Date => date_ms(v).map(|ms| ms.to_string()),
        Kind::DateTime => datetime_ms(v).map(|ms| ms.to_string()),
        Kind::Enum { options, multi } => {
            let values: Vec<String> = match v {
                Value::Array(items) if *multi => items.iter().filter_map(scalar).collect(),
                Value::String(s) if *multi => s.split(';').filter(|p| !p.is_empty()).map(str::to_owned).collect(),
                other => vec![scalar(other).ok_or("is an array or object, not an option")?],
            };
            if let Some(bad) = values.iter().find(|x| !options.contains(x)) {
                return Err(format!("`{bad}` is not one of its options ({})", options.join(", ")));
            }
            Ok(values.join(";"))
        }
    }
}

fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn short(v: &Value) -> String {
    v.to_string().chars().take(60).collect()
}

/// A date (`2026-05-04`, or the date of a timestamp in UTC, or epoch ms at midnight UTC) as
/// epoch milliseconds at midnight UTC.
fn date_ms(v: &Value) -> Result<i64, String> {
    const DAY_MS: i64 = 86_400_000;
    match v {
        Value::Number(n) => match n.as_i64() {
            Some(ms) if ms % DAY_MS == 0 => Ok(ms),
            _ => Err(format!("`{n}` is not midnight UTC in epoch milliseconds")),
        },
        Value::String(s) => {
            let date = match s.parse::<jiff::civil::Date>() {
                Ok(d) => d,
                Err(_) => s
                    .parse::<jiff::Timestamp>()
                    .map_err(|_| format!("`{s}` is not a date (YYYY-MM-DD)"))?
                    .to_zoned(jiff::tz::TimeZone::UTC)
                    .date(),
            };
            let midnight = date.to_zoned(jiff::tz::TimeZone::UTC).map_err(|e| format!("`{s}`: {e}"))?;
            Ok(midnight.timestamp().as_millisecond())
        }
        other => Err(format!("`{}` is not a date", short(other))),
    }
}

/// A datetime (RFC 3339, or epoch milliseconds) as epoch milliseconds.
fn datetime_ms(v: &Value) -> Result<i64, String> {
    match v {
        Value::Number(n) => n.as_i64().ok_or_else(|| format!("`{n}` is not epoch milliseconds")),
        Value::String(s) => s
            .parse::<jiff::Timestamp>()
            .map(|t| t.as_millisecond())
            .map_err(|_| format!("`{s}` is not a date-time (RFC 3339, e.g. 2026-05-04T10:00:00Z)")),
        other => Err(format!("`{}` is not a date-time", short(other))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn values_are_formatted_as_hubspot_wants_them_or_refused_by_name() {
        let stage = Kind::Enum { options: vec!["lead".into(), "customer".into()], multi: false };
        let roles = Kind::Enum { options: vec!["A".into(), "B".into()], multi: true };
        assert_eq!(format(&Kind::Date, &json!("2026-05-04")), Ok("1777852800000".into()));
        assert_eq!(format(&Kind::Date, &json!("2026-05-04T22:10:00Z")), Ok("1777852800000".into()));
        assert!(format(&Kind::Date, &json!(1_777_852_800_001_i64)).is_err());
        assert_eq!(format(&Kind::DateTime, &json!("2026-05-04T00:00:01Z")), Ok("1777852801000".into()));
        assert_eq!(format(&stage, &json!("lead")), Ok("lead".into()));
        assert_eq!(format(&stage, &json!("vip")), Err("`vip` is not one of its options (lead, customer)".into()));
        assert_eq!(format(&roles, &json!(["A", "B"])), Ok("A;B".into()));
        assert_eq!(format(&Kind::Number, &json!(2.5)), Ok("2.5".into()));
        assert!(format(&Kind::Number, &json!("many")).is_err());
        assert_eq!(format(&Kind::Bool, &json!(true)), Ok("true".into()));
        assert_eq!(format(&Kind::Text, &Value::Null), Ok(String::new()));
        let kinds = Kinds::from([("email".to_owned(), Kind::Text)]);
        let rec = json!({ "email": "a@example.com", "shoe_size": 9 });
        let e = properties(&kinds, "contacts", rec.as_object().unwrap()).unwrap_err();
        assert!(e.starts_with("`shoe_size` is no property of HubSpot's contacts"), "{e}");
    }
}
