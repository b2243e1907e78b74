//! Our image config and history ↔ the OCI image configuration, and RFC 3339
//! times (to the nanosecond) for its `created` fields.

use oci_spec::image::{
    Arch, ConfigBuilder, HistoryBuilder, ImageConfiguration, ImageConfigurationBuilder, Os,
    RootFsBuilder,
};

use crate::error::{Error, Result};
use crate::tree::{History, ImageConfig, Timestamp};

/// The OCI configuration of an image with `config`, `history` and the layers'
/// `DiffIDs` (bottom first), serialized canonically (keys sorted, no spaces).
pub(crate) fn to_oci(
    config: &ImageConfig,
    history: &[History],
    diff_ids: Vec<String>,
) -> Result<Vec<u8>> {
    let spec_err = |e: oci_spec::OciSpecError| Error::InvalidArgument(format!("OCI config: {e}"));
    let nonempty = |v: &Vec<String>| (!v.is_empty()).then(|| v.clone());
    let mut run = ConfigBuilder::default();
    if let Some(env) = nonempty(&config.env) {
        run = run.env(env);
    }
    if let Some(cmd) = nonempty(&config.cmd) {
        run = run.cmd(cmd);
    }
    if let Some(ep) = nonempty(&config.entrypoint) {
        run = run.entrypoint(ep);
    }
    if !config.workdir.is_empty() {
        run = run.working_dir(config.workdir.clone());
    }
    if !config.user.is_empty() {
        run = run.user(config.user.clone());
    }
    if !config.labels.is_empty() {
        run = run.labels(
            config
                .labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect::<std::collections::HashMap<_, _>>(),
        );
    }
    let mut records = Vec::with_capacity(history.len());
    for h in history {
        let mut b = HistoryBuilder::default();
        if !h.created_by.is_empty() {
            b = b.created_by(h.created_by.clone());
        }
        if !h.comment.is_empty() {
            b = b.comment(h.comment.clone());
        }
        if let Some(t) = h.created {
            b = b.created(format_rfc3339(t));
        }
        if h.empty_layer {
            b = b.empty_layer(true);
        }
        records.push(b.build().map_err(spec_err)?);
    }
    let mut image = ImageConfigurationBuilder::default()
        .architecture(Arch::default())
        .os(Os::Linux)
        .config(run.build().map_err(spec_err)?)
        .rootfs(
            RootFsBuilder::default()
                .typ("layers")
                .diff_ids(diff_ids)
                .build()
                .map_err(spec_err)?,
        )
        .history(records);
    if let Some(t) = config.created {
        image = image.created(format_rfc3339(t));
    }
    if !config.author.is_empty() {
        image = image.author(config.author.clone());
    }
    canonical_json(&image.build().map_err(spec_err)?)
}

/// Our config and history from an OCI configuration with `layers` layers.
/// A configuration without history gets one empty record per layer.
pub(crate) fn from_oci(
    oci: &ImageConfiguration,
    layers: usize,
    what: &str,
) -> Result<(ImageConfig, Vec<History>)> {
    let bad = |reason: String| Error::Oci {
        what: what.to_owned(),
        reason,
    };
    let time = |s: &String| parse_rfc3339(s).ok_or_else(|| bad(format!("bad time '{s}'")));
    let mut config = ImageConfig {
        created: oci.created().as_ref().map(time).transpose()?,
        author: oci.author().clone().unwrap_or_default(),
        ..ImageConfig::default()
    };
    if let Some(run) = oci.config() {
        config.env = run.env().clone().unwrap_or_default();
        config.cmd = run.cmd().clone().unwrap_or_default();
        config.entrypoint = run.entrypoint().clone().unwrap_or_default();
        config.workdir = run.working_dir().clone().unwrap_or_default();
        config.user = run.user().clone().unwrap_or_default();
        config.labels = run
            .labels()
            .clone()
            .unwrap_or_default()
            .into_iter()
            .collect();
    }
    let mut history = Vec::new();
    for h in oci.history().as_deref().unwrap_or_default() {
        history.push(History {
            created_by: h.created_by().clone().unwrap_or_default(),
            comment: h.comment().clone().unwrap_or_default(),
            created: h.created().as_ref().map(time).transpose()?,
            empty_layer: h.empty_layer().unwrap_or(false),
        });
    }
    let steps = history.iter().filter(|h| !h.empty_layer).count();
    if history.is_empty() {
        history = vec![History::default(); layers];
    } else if steps != layers {
        return Err(bad(format!(
            "the history has {steps} records that made a layer but there are {layers} layers"
        )));
    }
    Ok((config, history))
}

/// JSON with object keys sorted and no whitespace: the same value always
/// gives the same bytes.
pub(crate) fn canonical_json(value: &impl serde::Serialize) -> Result<Vec<u8>> {
    fn sort(v: serde_json::Value) -> serde_json::Value {
        match v {
            serde_json::Value::Object(map) => {
                let mut entries: Vec<(String, serde_json::Value)> = map.into_iter().collect();
                entries.sort_by(|a, b| a.0.cmp(&b.0));
                serde_json::Value::Object(entries.into_iter().map(|(k, v)| (k, sort(v))).collect())
            }
            serde_json::Value::Array(items) => {
                serde_json::Value::Array(items.into_iter().map(sort).collect())
            }
            other => other,
        }
    }
    let value = serde_json::to_value(value)
        .map_err(|e| Error::InvalidArgument(format!("cannot serialize JSON: {e}")))?;
    serde_json::to_vec(&sort(value))
        .map_err(|e| Error::InvalidArgument(format!("cannot serialize JSON: {e}")))
}

/// `YYYY-MM-DDTHH:MM:SS[.fffffffff]Z`, nanoseconds kept (trailing zeros cut).
#[allow(clippy::many_single_char_names, reason = "calendar formulas")]
pub(crate) fn format_rfc3339(t: Timestamp) -> String {
    let days = t.secs.div_euclid(86_400);
    let rem = t.secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let mut s = format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    );
    if t.nanos != 0 {
        let frac = format!("{:09}", t.nanos);
        s.push('.');
        s.push_str(frac.trim_end_matches('0'));
    }
    s.push('Z');
    s
}

/// Parses RFC 3339 (`Z` or a `±HH:MM` offset, any number of fraction digits,
/// nanoseconds kept).
#[allow(clippy::many_single_char_names, reason = "calendar formulas")]
pub(crate) fn parse_rfc3339(s: &str) -> Option<Timestamp> {
    let b = s.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = b.get(r)?;
        if part.is_empty() || !part.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(part).ok()?.parse().ok()
    };
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let mut i = 19;
    let mut nanos: u32 = 0;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            if i - start < 9 {
                nanos += u32::from(b[i] - b'0') * 10u32.pow(8 - (i - start) as u32);
            }
            i += 1;
        }
        if i == start {
            return None;
        }
    }
    let offset = match b.get(i..)? {
        b"Z" | b"z" => 0,
        [sign @ (b'+' | b'-'), ..] if b.len() == i + 6 && b[i + 3] == b':' => {
            let o = num(i + 1..i + 3)? * 3600 + num(i + 4..i + 6)? * 60;
            if *sign == b'+' { o } else { -o }
        }
        _ => return None,
    };
    let secs = days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + sec - offset;
    Some(Timestamp::new(secs, nanos))
}

// Howard Hinnant's algorithms for the proleptic Gregorian calendar.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[allow(clippy::many_single_char_names, reason = "calendar formulas")]
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_round_trips_to_the_nanosecond() {
        for t in [
            Timestamp::new(0, 0),
            Timestamp::new(1_700_000_000, 123_456_789),
            Timestamp::new(951_782_400, 500_000_000), // 2000-02-29
            Timestamp::new(-86_400, 1),
        ] {
            let s = format_rfc3339(t);
            assert_eq!(parse_rfc3339(&s), Some(t), "{s}");
        }
        assert_eq!(
            format_rfc3339(Timestamp::new(951_782_400, 0)),
            "2000-02-29T00:00:00Z"
        );
        assert_eq!(
            parse_rfc3339("2000-02-29T02:00:00.5+02:00"),
            Some(Timestamp::new(951_782_400, 500_000_000))
        );
        assert_eq!(parse_rfc3339("2000-13-01T00:00:00Z"), None);
        assert_eq!(parse_rfc3339("garbage"), None);
    }
}
