//! Unknown fields in manifests read from disk: a typo such as `externalTraficPolicy` must be an
//! error naming the field, as `kubectl apply` (strict field validation) makes it, not a Service
//! that silently falls back to the default policy.
//!
//! The `k8s-openapi` types ignore fields they do not know, so the check is a round trip: the
//! object as written is compared with the typed value serialised again, and a key present in the
//! first and missing from the second (at any depth, through lists) is one the schema does not
//! have. Keys whose value is `null` are never reported (`kubectl get -o yaml` prints
//! `creationTimestamp: null`). The schema comes from the types themselves: the field names of a
//! struct are those its `Deserialize` impl hands to `deserialize_struct`, read by a probe
//! deserializer, and used to suggest the field that was meant.
//!
//! Objects watched on the API server are not checked: a newer server may send fields this
//! build's types do not know, and those are not typos.

use serde::de::{self, Deserialize, Visitor};
use serde_json::Value;

use k8s_openapi::api::core::v1 as core;
use k8s_openapi::api::discovery::v1 as discovery;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

/// The first field of `written` (an object as read) that its typed form `typed` (the
/// `k8s-openapi` value serialised again) lost: its dotted path (`spec.ports[0].nme`) and the
/// reason, with the field meant when one is close. `kind` is `Service` or `EndpointSlice`.
pub(crate) fn first_unknown(
    kind: &str,
    written: &Value,
    typed: &Value,
) -> Option<(String, String)> {
    let mut path = String::new();
    let (parent, key) = unknown_at(written, typed, &mut path)?;
    let known = fields_at(kind, &parent);
    let reason = match known.and_then(|k| closest(&key, k)) {
        Some(meant) => format!("unknown field `{key}`: did you mean `{meant}`?"),
        None => match known {
            Some(k) => format!(
                "unknown field `{key}`, expected one of {}",
                k.iter()
                    .map(|f| format!("`{f}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            None => format!("unknown field `{key}`"),
        },
    };
    Some((path, reason))
}

/// Walks both values; on the first key `written` has and `typed` lacks, leaves its full path in
/// `path` and returns the parent's path and the key.
fn unknown_at(written: &Value, typed: &Value, path: &mut String) -> Option<(String, String)> {
    match (written, typed) {
        (Value::Object(w), Value::Object(t)) => {
            for (key, value) in w {
                if value.is_null() {
                    continue;
                }
                let len = path.len();
                let parent = path.clone();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(key);
                match t.get(key) {
                    None => return Some((parent, key.clone())),
                    Some(tv) => {
                        if let Some(found) = unknown_at(value, tv, path) {
                            return Some(found);
                        }
                    }
                }
                path.truncate(len);
            }
            None
        }
        (Value::Array(w), Value::Array(t)) => {
            for (i, (wv, tv)) in w.iter().zip(t).enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                if let Some(found) = unknown_at(wv, tv, path) {
                    return Some(found);
                }
                path.truncate(len);
            }
            None
        }
        // Free-form values (labels, annotations, managedFields' fieldsV1) come back as they
        // went in; scalars have no fields.
        _ => None,
    }
}

/// The field names of the struct at `parent` (a path with list indices) of an object of `kind`.
fn fields_at(kind: &str, parent: &str) -> Option<&'static [&'static str]> {
    // `spec.ports[2]` -> `spec.ports[]`
    let mut shape = String::with_capacity(parent.len());
    let mut in_index = false;
    for c in parent.chars() {
        match c {
            '[' => {
                in_index = true;
                shape.push('[');
            }
            ']' => {
                in_index = false;
                shape.push(']');
            }
            _ if in_index => {}
            _ => shape.push(c),
        }
    }
    let fields = match (kind, shape.as_str()) {
        ("Service", "") => fields_of::<core::Service>(),
        ("EndpointSlice", "") => fields_of::<discovery::EndpointSlice>(),
        (_, "metadata") => fields_of::<ObjectMeta>(),
        ("Service", "spec") => fields_of::<core::ServiceSpec>(),
        ("Service", "spec.ports[]") => fields_of::<core::ServicePort>(),
        ("Service", "spec.sessionAffinityConfig") => fields_of::<core::SessionAffinityConfig>(),
        ("Service", "spec.sessionAffinityConfig.clientIP") => fields_of::<core::ClientIPConfig>(),
        ("Service", "status") => fields_of::<core::ServiceStatus>(),
        ("Service", "status.loadBalancer") => fields_of::<core::LoadBalancerStatus>(),
        ("Service", "status.loadBalancer.ingress[]") => fields_of::<core::LoadBalancerIngress>(),
        ("Service", "status.loadBalancer.ingress[].ports[]") => fields_of::<core::PortStatus>(),
        ("EndpointSlice", "endpoints[]") => fields_of::<discovery::Endpoint>(),
        ("EndpointSlice", "endpoints[].conditions") => fields_of::<discovery::EndpointConditions>(),
        ("EndpointSlice", "endpoints[].hints") => fields_of::<discovery::EndpointHints>(),
        ("EndpointSlice", "endpoints[].hints.forZones[]") => fields_of::<discovery::ForZone>(),
        ("EndpointSlice", "endpoints[].hints.forNodes[]") => fields_of::<discovery::ForNode>(),
        ("EndpointSlice", "ports[]") => fields_of::<discovery::EndpointPort>(),
        _ => return None,
    };
    Some(fields).filter(|f| !f.is_empty())
}

/// The field names `T`'s `Deserialize` impl declares (empty if it declares none).
fn fields_of<'de, T: Deserialize<'de>>() -> &'static [&'static str] {
    match T::deserialize(Probe) {
        Err(Probed(fields)) => fields,
        Ok(_) => &[],
    }
}

/// The declared field that `key` most likely meant: the nearest by edit distance (ignoring
/// case), if it is at most 2 edits away (1 for names of up to 4 letters).
fn closest(key: &str, known: &[&'static str]) -> Option<&'static str> {
    let key_l = key.to_ascii_lowercase();
    let limit = if key.len() <= 4 { 1 } else { 2 };
    known
        .iter()
        .map(|&f| (edit_distance(&key_l, &f.to_ascii_lowercase()), f))
        .filter(|&(d, _)| d <= limit)
        .min_by_key(|&(d, _)| d)
        .map(|(_, f)| f)
}

/// Levenshtein distance over bytes, adjacent transpositions counting once.
fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    // Three rows: two back (for transpositions), previous, current.
    let mut prev2: Vec<usize> = vec![0; b.len() + 1];
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for i in 1..=a.len() {
        cur[0] = i;
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut d = (prev[j] + 1).min(cur[j - 1] + 1).min(prev[j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d = d.min(prev2[j - 2] + 1);
            }
            cur[j] = d;
        }
        std::mem::swap(&mut prev2, &mut prev);
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

/// A deserializer that only answers `deserialize_struct`, with the declared field names.
struct Probe;

#[derive(Debug)]
struct Probed(&'static [&'static str]);

impl std::fmt::Display for Probed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("field-name probe")
    }
}

impl std::error::Error for Probed {}

impl de::Error for Probed {
    fn custom<M: std::fmt::Display>(_: M) -> Probed {
        Probed(&[])
    }
}

impl<'de> de::Deserializer<'de> for Probe {
    type Error = Probed;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Probed> {
        Err(Probed(&[]))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, Probed> {
        Err(Probed(fields))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
        ignored_any
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_field_names_come_from_the_types() {
        let spec = fields_of::<core::ServiceSpec>();
        assert!(spec.contains(&"externalTrafficPolicy"));
        assert!(spec.contains(&"ports"));
        assert!(fields_of::<discovery::EndpointConditions>().contains(&"serving"));
    }

    #[test]
    fn near_misses_are_named_far_ones_are_not() {
        let spec = fields_of::<core::ServiceSpec>();
        assert_eq!(
            closest("externalTraficPolicy", spec),
            Some("externalTrafficPolicy")
        );
        assert_eq!(closest("clusterIp", spec), Some("clusterIP"));
        assert_eq!(closest("sesionAffintiy", spec), Some("sessionAffinity"));
        assert_eq!(closest("balancerPolicy", spec), None);
        assert_eq!(edit_distance("ab", "ba"), 1);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }

    #[test]
    fn the_first_lost_key_is_reported_with_its_path() {
        let written: Value = serde_json::json!({
            "metadata": {"name": "a", "creationTimestamp": null},
            "spec": {"ports": [{"port": 80}, {"port": 81, "nme": "x"}]},
        });
        let typed: Value = serde_json::json!({
            "metadata": {"name": "a"},
            "spec": {"ports": [{"port": 80}, {"port": 81}]},
        });
        let (path, reason) = first_unknown("Service", &written, &typed).unwrap();
        assert_eq!(path, "spec.ports[1].nme");
        assert_eq!(reason, "unknown field `nme`: did you mean `name`?");
        assert_eq!(first_unknown("Service", &typed, &typed), None);
    }
}
