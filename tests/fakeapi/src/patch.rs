//! Patches: JSON merge patch (RFC 7386) exactly, and strategic merge patch approximately.
//!
//! A real strategic merge patch merges lists by a key that the Go struct tags declare
//! (`ports` by `port`, `containers` by `name`). This server has no schema, so it only merges a
//! list of objects by key when the patch itself names the key, which is what `kubectl apply`
//! sends for such lists: a `$setElementOrder/<field>` directive listing each element by its
//! merge key, and `{"<key>": .., "$patch": "delete"}` entries for removed elements. Any other
//! list is replaced whole, as in a merge patch. `$retainKeys`, `$patch: replace` and
//! `$deleteFromPrimitiveList/<field>` are honoured; other directives are dropped.

use serde_json::{Map, Value};

/// RFC 7386: objects merge recursively, `null` removes a key, anything else replaces.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let target = target.as_object_mut().expect("made an object above");
    for (key, value) in patch {
        if value.is_null() {
            target.remove(key);
        } else {
            merge_patch(target.entry(key).or_insert(Value::Null), value);
        }
    }
}

/// The approximation of a strategic merge patch described in the module docs.
pub fn strategic_merge_patch(target: &mut Value, patch: &Value) {
    strategic(target, patch);
    strip_directives(target);
}

fn strategic(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if patch.get("$patch").and_then(Value::as_str) == Some("replace") {
        *target = Value::Object(patch.clone());
        return;
    }
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let target_map = target.as_object_mut().expect("made an object above");
    for (key, value) in patch {
        if key.starts_with('$') {
            continue;
        }
        if value.is_null() {
            target_map.remove(key);
            continue;
        }
        let slot = target_map.entry(key).or_insert(Value::Null);
        match (slot.as_array_mut(), value.as_array()) {
            (Some(current), Some(items)) => {
                let order = patch.get(&format!("$setElementOrder/{key}"));
                merge_list(current, items, order);
            }
            _ => strategic(slot, value),
        }
    }
    for (key, value) in patch {
        if let Some(field) = key.strip_prefix("$deleteFromPrimitiveList/") {
            if let (Some(list), Some(gone)) = (
                target_map.get_mut(field).and_then(Value::as_array_mut),
                value.as_array(),
            ) {
                list.retain(|v| !gone.contains(v));
            }
        }
    }
    if let Some(keep) = patch.get("$retainKeys").and_then(Value::as_array) {
        target_map.retain(|k, _| keep.iter().any(|kept| kept.as_str() == Some(k)));
    }
}

/// Merges a patch list into the stored list by the merge key the patch names, or replaces it.
fn merge_list(current: &mut Vec<Value>, items: &[Value], order: Option<&Value>) {
    let order = order.and_then(Value::as_array);
    let key = merge_key(items, order);
    let Some(key) = key else {
        if let Some(order) = order.filter(|o| o.iter().all(|v| !v.is_object())) {
            // A set of primitives (`finalizers`): union, in the order given.
            let mut merged: Vec<Value> = order.clone();
            for v in current.iter().chain(items) {
                if !merged.contains(v) {
                    merged.push(v.clone());
                }
            }
            *current = merged;
        } else {
            *current = items.to_vec();
        }
        return;
    };
    for item in items {
        let position = current.iter().position(|c| c.get(&key) == item.get(&key));
        let delete = item.get("$patch").and_then(Value::as_str) == Some("delete");
        match (position, delete) {
            (Some(i), true) => {
                current.remove(i);
            }
            (Some(i), false) => strategic(&mut current[i], item),
            (None, false) => {
                let mut fresh = Value::Null;
                strategic(&mut fresh, item);
                current.push(fresh);
            }
            (None, true) => {}
        }
    }
    if let Some(order) = order {
        let rank = |v: &Value| {
            order
                .iter()
                .position(|o| o.get(&key) == v.get(&key))
                .unwrap_or(usize::MAX)
        };
        current.sort_by_key(rank);
    }
}

/// The merge key: the single key of `$setElementOrder` entries, or the other key of a
/// `$patch: delete` entry.
fn merge_key(items: &[Value], order: Option<&Vec<Value>>) -> Option<String> {
    let single_key = |v: &Value| {
        let keys: Vec<&String> = v.as_object()?.keys().filter(|k| *k != "$patch").collect();
        (keys.len() == 1).then(|| keys[0].clone())
    };
    if let Some(first) = order.and_then(|o| o.first()) {
        return single_key(first);
    }
    items
        .iter()
        .find(|i| i.get("$patch").is_some())
        .and_then(single_key)
}

fn strip_directives(value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.retain(|k, _| !k.starts_with('$'));
            map.values_mut().for_each(strip_directives);
        }
        Value::Array(items) => items.iter_mut().for_each(strip_directives),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_patch_rfc7386() {
        let mut doc = json!({"a": "b", "c": {"d": "e", "f": "g"}, "l": [1, 2]});
        merge_patch(
            &mut doc,
            &json!({"a": "z", "c": {"f": null}, "l": [3], "n": {"x": 1}}),
        );
        assert_eq!(
            doc,
            json!({"a": "z", "c": {"d": "e"}, "l": [3], "n": {"x": 1}})
        );
    }

    #[test]
    fn strategic_merges_ports_by_key_like_kubectl_apply() {
        let mut svc = json!({"spec": {"ports": [
            {"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"},
            {"name": "https", "port": 443, "protocol": "TCP"},
            {"name": "metrics", "port": 9090, "protocol": "TCP"},
        ]}});
        // What kubectl apply sends after editing port 80 and removing 9090.
        let patch = json!({"spec": {
            "$setElementOrder/ports": [{"port": 80}, {"port": 443}],
            "ports": [{"port": 80, "targetPort": 8081}, {"port": 9090, "$patch": "delete"}],
        }});
        strategic_merge_patch(&mut svc, &patch);
        assert_eq!(
            svc,
            json!({"spec": {"ports": [
                {"name": "http", "port": 80, "targetPort": 8081, "protocol": "TCP"},
                {"name": "https", "port": 443, "protocol": "TCP"},
            ]}})
        );
    }

    #[test]
    fn strategic_replaces_lists_without_a_key() {
        let mut slice = json!({"endpoints": [{"addresses": ["10.0.0.1"]}]});
        strategic_merge_patch(
            &mut slice,
            &json!({"endpoints": [{"addresses": ["10.0.0.2"]}]}),
        );
        assert_eq!(slice, json!({"endpoints": [{"addresses": ["10.0.0.2"]}]}));
    }
}
