//! Strict parsing of keys and query strings, so every bad input gets a precise 400.

use percent_encoding::percent_decode_str;

use crate::ApiError;

/// The decoded key from a request path `/v1/kv/<key>` (the raw path, percent-decoded once).
pub(crate) fn key_from_path(path: &str) -> Result<String, ApiError> {
    let raw = path.strip_prefix("/v1/kv/").unwrap_or_default();
    let bytes: Vec<u8> = percent_decode_str(raw).collect();
    String::from_utf8(bytes).map_err(|e| {
        ApiError::bad_request(
            format!(
                "the key is not valid UTF-8 after percent-decoding (invalid byte at position {})",
                e.utf8_error().valid_up_to()
            ),
            "keys are UTF-8 strings; percent-encode each byte of the UTF-8 form, e.g. %C3%A9 for é",
        )
    })
}

/// Query parameters as decoded pairs, refusing names not in `allowed`.
pub(crate) fn parse(
    raw: Option<&str>,
    allowed: &[&str],
) -> Result<Vec<(String, String)>, ApiError> {
    let mut out = Vec::new();
    let Some(raw) = raw else { return Ok(out) };
    for part in raw.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = part.split_once('=').unwrap_or((part, ""));
        let decode = |s: &str| -> Result<String, ApiError> {
            let plus = s.replace('+', " ");
            percent_decode_str(&plus)
                .decode_utf8()
                .map(|c| c.into_owned())
                .map_err(|_| {
                    ApiError::bad_request(
                        format!(
                            "query parameter {name:?} is not valid UTF-8 after percent-decoding"
                        ),
                        "percent-encode the UTF-8 bytes of the value",
                    )
                })
        };
        let name = decode(name)?;
        if !allowed.contains(&name.as_str()) {
            return Err(ApiError::bad_request(
                format!("unknown query parameter {name:?}"),
                format!("this endpoint accepts: {}", allowed.join(", ")),
            ));
        }
        out.push((name, decode(value)?));
    }
    Ok(out)
}

pub(crate) fn get<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .rev()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// A duration written as numbers with units, `24h`, `1d12h`, `90s`, `250ms`, in
/// milliseconds. Nothing else: the API document states exactly this grammar,
/// `^([0-9]{1,9}(ms|s|m|h|d))+$` (token `ttl`, audit `since`).
pub fn duration_ms(text: &str) -> Option<u64> {
    let mut total: u64 = 0;
    let mut rest = text;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 || digits > 9 {
            return None;
        }
        let n: u64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let (unit, len) = if rest.starts_with("ms") {
            (1, 2)
        } else {
            match rest.as_bytes().first()? {
                b's' => (1_000, 1),
                b'm' => (60_000, 1),
                b'h' => (3_600_000, 1),
                b'd' => (86_400_000, 1),
                _ => return None,
            }
        };
        rest = &rest[len..];
        total = total.saturating_add(n.saturating_mul(unit));
    }
    Some(total)
}

/// A revision parameter such as `cas`.
pub(crate) fn revision(params: &[(String, String)], name: &str) -> Result<Option<u64>, ApiError> {
    get(params, name)
        .map(|v| {
            v.parse::<u64>().map_err(|_| {
                ApiError::bad_request(
                    format!("{name} must be a revision (a non-negative integer), got {v:?}"),
                    format!(
                        "use ?{name}=0 to require that the key does not exist, or ?{name}=R with the key's current revision (the X-Conclave-Revision header of a GET)"
                    ),
                )
            })
        })
        .transpose()
}

/// A boolean flag such as `force`: absent, `true` or `false`.
pub(crate) fn flag(params: &[(String, String)], name: &str) -> Result<bool, ApiError> {
    match get(params, name) {
        None | Some("false") => Ok(false),
        Some("true") => Ok(true),
        Some(other) => Err(ApiError::bad_request(
            format!("{name} must be true or false, got {other:?}"),
            format!("pass ?{name}=true or leave it out"),
        )),
    }
}

/// `consistency=stale|linearizable` → true when stale reads were asked for.
pub(crate) fn stale(params: &[(String, String)]) -> Result<bool, ApiError> {
    match get(params, "consistency") {
        None | Some("linearizable") => Ok(false),
        Some("stale") => Ok(true),
        Some(other) => Err(ApiError::bad_request(
            format!("consistency must be \"linearizable\" or \"stale\", got {other:?}"),
            "omit it for linearizable reads (the default), or pass ?consistency=stale to read this node's copy",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_percent_decoded_once_and_must_be_utf8() {
        assert_eq!(key_from_path("/v1/kv/a/b%2Fc").unwrap(), "a/b/c");
        assert_eq!(key_from_path("/v1/kv/caf%C3%A9").unwrap(), "café");
        assert_eq!(key_from_path("/v1/kv/%2541").unwrap(), "%41");
        assert!(key_from_path("/v1/kv/%FF").is_err());
    }

    #[test]
    fn durations_are_numbers_with_units() {
        assert_eq!(duration_ms("24h"), Some(86_400_000));
        assert_eq!(duration_ms("1d12h"), Some(129_600_000));
        assert_eq!(duration_ms("250ms"), Some(250));
        assert_eq!(duration_ms("90s"), Some(90_000));
        assert_eq!(duration_ms("5m"), Some(300_000));
        for bad in ["", "h", "24", "1 h", "1hour", "1.5h", "-1h", "1234567890s"] {
            assert_eq!(duration_ms(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn query_parsing_is_strict() {
        let p = parse(Some("cas=3&consistency=stale"), &["cas", "consistency"]).unwrap();
        assert_eq!(revision(&p, "cas").unwrap(), Some(3));
        assert!(stale(&p).unwrap());
        assert!(parse(Some("cass=3"), &["cas"]).is_err());
        let p = parse(Some("cas=-1"), &["cas"]).unwrap();
        assert!(revision(&p, "cas").is_err());
        let p = parse(Some("prefix=a+b%2F"), &["prefix"]).unwrap();
        assert_eq!(get(&p, "prefix"), Some("a b/"));
    }
}
