use std::collections::BTreeSet;

use super::*;

const METHODS: [&str; 5] = ["get", "put", "post", "delete", "patch"];

/// Every `(path, method)` the crate's routers register, read from the source: each
/// `.route(PATH, HANDLERS)` call with its path literal (IPAM's `format!("{base}...")` once
/// per base) and the methods named in HANDLERS. Test modules are skipped.
fn routed() -> BTreeSet<(String, String)> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src");
    let mut files = vec![];
    let mut dirs = vec![std::path::PathBuf::from(dir)];
    while let Some(d) = dirs.pop() {
        for entry in std::fs::read_dir(d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    let mut routes = BTreeSet::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let code: String = text
            .split("#[cfg(test)]")
            .next()
            .unwrap_or_default()
            .lines()
            .filter(|l| !l.trim_start().starts_with("//"))
            .collect::<Vec<_>>()
            .join("\n");
        let mut rest = code.as_str();
        while let Some(at) = rest.find(".route(") {
            let call = &rest[at + ".route(".len()..];
            let end = closing_paren(call);
            let (args, after) = call.split_at(end);
            rest = after;
            let (path_arg, handlers) = args.split_once(',').unwrap();
            for path in paths_of(path_arg.trim()) {
                for method in METHODS {
                    let named = handlers.match_indices(&format!("{method}(")).any(|(i, _)| {
                        i == 0
                            || !handlers.as_bytes()[i - 1].is_ascii_alphanumeric()
                                && handlers.as_bytes()[i - 1] != b'_'
                    });
                    if named {
                        routes.insert((path.clone(), method.to_owned()));
                    }
                }
            }
        }
    }
    routes
}

/// The index of the `)` closing a call whose `(` came just before `s`.
fn closing_paren(s: &str) -> usize {
    let mut depth = 1;
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth == 0 {
                    return i;
                }
            }
            _ => {}
        }
    }
    panic!("unbalanced .route( call: {s}");
}

/// The paths a route's first argument spells, as the document writes them.
fn paths_of(arg: &str) -> Vec<String> {
    if arg == "PATH" || arg == "openapi::PATH" {
        return vec![PATH.to_owned()];
    }
    let (literal, bases): (&str, Vec<&str>) = match arg.strip_prefix("&format!(") {
        Some(f) => (f.trim_end_matches(')'), IPAM_BASES.to_vec()),
        None => (arg, vec![""]),
    };
    let literal = literal.trim_matches('"');
    bases
        .into_iter()
        .map(|base| {
            let path = literal
                .replace("{base}", base)
                .replace("{{", "{")
                .replace("}}", "}")
                .replace("{*key}", "{key}");
            // The empty key's route answers "the key is empty" (400): the document's
            // `/v1/kv/{key}` covers it.
            if path == "/v1/kv/" {
                "/v1/kv/{key}".to_owned()
            } else {
                path
            }
        })
        .collect()
}

fn documented(doc: &Document) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for (path, item) in &doc.paths.paths {
        let ops = [
            ("get", &item.get),
            ("put", &item.put),
            ("post", &item.post),
            ("delete", &item.delete),
            ("patch", &item.patch),
        ];
        for (method, op) in ops {
            if op.is_some() {
                out.insert((path.clone(), method.to_owned()));
            }
        }
    }
    out
}

#[test]
fn every_route_is_documented_and_every_documented_operation_is_routed() {
    let routed = routed();
    let documented = documented(&document());
    assert!(routed.len() > 80, "the source scan found only {routed:?}");
    let undocumented: Vec<_> = routed.difference(&documented).collect();
    let unrouted: Vec<_> = documented.difference(&routed).collect();
    assert!(
        undocumented.is_empty(),
        "routes missing from the OpenAPI document: {undocumented:?}"
    );
    assert!(
        unrouted.is_empty(),
        "documented operations no router serves: {unrouted:?}"
    );
}

#[test]
fn the_document_is_openapi_3_1_with_unique_operation_ids_and_resolvable_refs() {
    let doc = document();
    let json = serde_json::to_value(&doc).unwrap();
    assert_eq!(json["openapi"], "3.1.0");
    let mut ids = BTreeSet::new();
    for (path, item) in json["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            if !METHODS.contains(&method.as_str()) {
                continue;
            }
            let id = op["operationId"].as_str().unwrap().to_owned();
            assert!(
                ids.insert(id.clone()),
                "{method} {path}: operation id {id} twice"
            );
            for status in ["200", "400", "401", "403", "500", "503"] {
                if status == "200" && op["responses"].get(status).is_none() {
                    continue;
                }
                assert!(
                    op["responses"].get(status).is_some(),
                    "{method} {path} does not document {status}"
                );
            }
        }
    }
    let text = json.to_string();
    let schemas = json["components"]["schemas"].as_object().unwrap();
    let missing: BTreeSet<String> = text
        .match_indices("#/components/schemas/")
        .map(|(at, _)| {
            text[at + "#/components/schemas/".len()..]
                .chars()
                .take_while(|c| *c != '"')
                .collect()
        })
        .filter(|name| !schemas.contains_key(name))
        .collect();
    assert!(missing.is_empty(), "$refs to missing schemas: {missing:?}");
}

#[test]
fn aliases_serve_what_their_canonical_paths_serve() {
    let doc = document();
    for (alias, canonical) in ALIASES {
        let a = serde_json::to_value(&doc.paths.paths[*alias]).unwrap();
        let c = serde_json::to_value(&doc.paths.paths[*canonical]).unwrap();
        let strip = |v: serde_json::Value| v.to_string().replace("_seed\"", "\"");
        assert_eq!(strip(a), strip(c), "{alias} differs from {canonical}");
    }
    assert!(doc.paths.paths.contains_key("/api/v1/networks"));
    assert!(doc.paths.paths.contains_key("/v1/ipam/networks"));
}

#[test]
fn consistency_is_a_closed_set() {
    let doc = serde_json::to_value(document()).unwrap();
    let param = doc["paths"]["/v1/kv/{key}"]["get"]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "consistency")
        .cloned()
        .unwrap();
    let text = param.to_string();
    assert!(
        text.contains("linearizable") && text.contains("stale"),
        "{text}"
    );
}

#[test]
fn the_served_document_bounds_unsigned_integers_closes_request_bodies_and_links_real_operations() {
    let doc = document_json();
    let text = doc.to_string();
    assert!(!text.contains("u-int"), "utoipa's format spelling leaked");
    assert!(
        !text.contains("[`"),
        "a rustdoc link leaked into a description"
    );
    let cas = doc["paths"]["/v1/kv/{key}"]["put"]["parameters"][1]["schema"].clone();
    assert_eq!(cas["format"], "uint64");
    assert_eq!(cas["maximum"], serde_json::json!(u64::MAX));
    for name in CLOSED_BODIES {
        let schema = &doc["components"]["schemas"][*name];
        assert!(schema.is_object(), "{name} is not a component");
        let has_closed = schema
            .to_string()
            .contains("\"additionalProperties\":false");
        assert!(has_closed, "{name} is not closed: {schema}");
    }
    let ids: BTreeSet<String> = doc["paths"]
        .as_object()
        .unwrap()
        .values()
        .flat_map(|item| item.as_object().unwrap().values())
        .filter_map(|op| op["operationId"].as_str().map(str::to_owned))
        .collect();
    let mut links = 0;
    for item in doc["paths"].as_object().unwrap().values() {
        for op in item.as_object().unwrap().values() {
            for response in op["responses"]
                .as_object()
                .into_iter()
                .flat_map(|r| r.values())
            {
                for link in response["links"]
                    .as_object()
                    .into_iter()
                    .flat_map(|l| l.values())
                {
                    links += 1;
                    let target = link["operationId"].as_str().unwrap();
                    assert!(
                        ids.contains(target),
                        "a link to {target}, which is no operation"
                    );
                }
            }
        }
    }
    assert!(links >= 20, "{links} links");
    // A map keyed by node id has string keys in JSON.
    let names =
        &doc["components"]["schemas"]["KeyringAnswer"]["properties"]["nodes"]["propertyNames"];
    assert_eq!(names["type"], "string");
}
