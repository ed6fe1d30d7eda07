//! `application/x-www-form-urlencoded` bodies from JSON, with the bracket nesting Stripe (and
//! Rails-style APIs) read: an object's fields as `metadata[plan]=gold`, an array of objects
//! by index as `items[0][price]=price_1`, an array of scalars as `expand[]=customer`. A
//! `null`, an empty object or an empty array is sent as an empty value (`description=`),
//! which is how such APIs unset a field. Numbers keep their exact text (no float round trip).
//! The one encoder for every form body: the REST sink's `encoding = "form"` and the Stripe
//! connector both use it.

use dovetail_core::Error;
use serde_json::Value;

use crate::request::Request;

/// The content type of a form body.
pub const FORM_CONTENT_TYPE: &str = "application/x-www-form-urlencoded";

/// The (name, value) pairs of `body`, fields in key order; `body` must be an object.
pub fn form_pairs(body: &Value) -> Result<Vec<(String, String)>, Error> {
    let Value::Object(fields) = body else {
        return Err(Error::data(format!(
            "a form body is built from an object's fields, not from {}",
            dovetail_core::json::json_type_phrase(body)
        )));
    };
    let mut out = Vec::new();
    for (name, v) in fields {
        push(&mut out, name.clone(), v);
    }
    Ok(out)
}

/// `body` encoded as a form (`a=1&metadata%5Bk%5D=v`).
pub fn form_encode(body: &Value) -> Result<String, Error> {
    let mut s = form_urlencoded::Serializer::new(String::new());
    for (k, v) in form_pairs(body)? {
        s.append_pair(&k, &v);
    }
    Ok(s.finish())
}

fn push(out: &mut Vec<(String, String)>, name: String, v: &Value) {
    match v {
        Value::Null => out.push((name, String::new())),
        Value::Bool(b) => out.push((name, b.to_string())),
        Value::Number(n) => out.push((name, n.to_string())),
        Value::String(s) => out.push((name, s.clone())),
        Value::Object(m) if m.is_empty() => out.push((name, String::new())),
        Value::Object(m) => {
            for (k, v) in m {
                push(out, format!("{name}[{k}]"), v);
            }
        }
        Value::Array(a) if a.is_empty() => out.push((name, String::new())),
        Value::Array(a) => {
            for (i, v) in a.iter().enumerate() {
                let nested = matches!(v, Value::Object(_) | Value::Array(_));
                let key = if nested { format!("{name}[{i}]") } else { format!("{name}[]") };
                push(out, key, v);
            }
        }
    }
}

impl Request {
    /// A form body (with `Content-Type: application/x-www-form-urlencoded`) from an
    /// object, nested as [`form_pairs`] says; anything but an object fails the request.
    pub fn form(mut self, body: &Value) -> Self {
        match form_encode(body) {
            Ok(text) => self.body(text).header("content-type", FORM_CONTENT_TYPE),
            Err(e) => {
                self.error = Some(e.message().to_owned());
                self
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn pairs(v: Value) -> Vec<(String, String)> {
        form_pairs(&v).unwrap().into_iter().collect()
    }

    fn p(k: &str, v: &str) -> (String, String) {
        (k.to_owned(), v.to_owned())
    }

    #[test]
    fn nests_objects_arrays_and_scalars_the_way_stripe_reads_them() {
        let body = json!({
            "customer": "cus_1",
            "metadata": { "dovetail_key": "k1", "plan": "gold" },
            "items": [{ "price": "price_1", "quantity": 2 }, { "price": "price_2" }],
            "expand": ["customer", "latest_invoice"],
            "amount": 1099,
            "unit_amount_decimal": "10.995",
            "livemode": false,
            "description": null,
            "tax_ids": [],
            "shipping": { "address": { "line1": "1 Main St" } },
            "matrix": [[1, 2]]
        });
        assert_eq!(
            pairs(body),
            [
                p("amount", "1099"),
                p("customer", "cus_1"),
                p("description", ""),
                p("expand[]", "customer"),
                p("expand[]", "latest_invoice"),
                p("items[0][price]", "price_1"),
                p("items[0][quantity]", "2"),
                p("items[1][price]", "price_2"),
                p("livemode", "false"),
                p("matrix[0][]", "1"),
                p("matrix[0][]", "2"),
                p("metadata[dovetail_key]", "k1"),
                p("metadata[plan]", "gold"),
                p("shipping[address][line1]", "1 Main St"),
                p("tax_ids", ""),
                p("unit_amount_decimal", "10.995"),
            ]
        );
    }

    #[test]
    fn percent_encodes_names_and_values_and_keeps_big_numbers_exact() {
        let body: Value = serde_json::from_str(r#"{"metadata":{"a b":"x&y=z"},"n":12345678901234567890123}"#).unwrap();
        assert_eq!(form_encode(&body).unwrap(), "metadata%5Ba+b%5D=x%26y%3Dz&n=12345678901234567890123");
    }

    #[test]
    fn only_an_object_makes_a_form() {
        let e = form_encode(&json!([1, 2])).unwrap_err();
        assert!(e.to_string().contains("a form body is built from an object's fields, not from an array"), "{e}");
    }
}
