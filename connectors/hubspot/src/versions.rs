//! HubSpot's date-based API versions and when each stops being supported. A configured
//! `api_version` within [`NOTICE_DAYS`] of its end of life (or past it) is reported like a
//! `Sunset` header: a deprecation in the run report's HTTP figures (and its alert), and a
//! warning in the log. A version not in the table (a newer one) is used as given, unreported.

use dovetail_core::report::Deprecation;
use jiff::civil::Date;

/// Each version HubSpot documents and the last day it is supported: versions come out in
/// March and September and are supported for 18 months.
pub const VERSIONS: &[(&str, &str)] = &[("2026-03", "2027-09-30"), ("2026-09", "2028-03-31")];

/// How many days before its end of life a configured version is reported.
pub const NOTICE_DAYS: i64 = 365;

/// The deprecation to report for `version` on `today`, if it is near or past its end of life.
pub(crate) fn notice(version: &str, today: Date) -> Option<Deprecation> {
    let (_, end) = VERSIONS.iter().find(|(v, _)| *v == version)?;
    let end_date: Date = end.parse().ok()?;
    let from = end_date.checked_sub(jiff::Span::new().days(NOTICE_DAYS)).ok()?;
    (today >= from).then(|| Deprecation {
        endpoint: format!("HubSpot API version {version}"),
        deprecation: Some(format!("supported until {end}")),
        sunset: Some((*end).to_owned()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_version_is_reported_from_a_year_before_its_end_of_life() {
        let day = |s: &str| s.parse::<Date>().unwrap();
        assert_eq!(notice("2026-03", day("2026-09-29")), None);
        let n = notice("2026-03", day("2026-09-30")).unwrap();
        assert_eq!((n.endpoint.as_str(), n.sunset.as_deref()), ("HubSpot API version 2026-03", Some("2027-09-30")));
        assert!(notice("2026-03", day("2028-01-01")).is_some(), "past its end of life too");
        assert_eq!(notice("2026-09", day("2026-12-07")), None);
        assert_eq!(notice("2027-03", day("2030-01-01")), None, "a version the table does not know");
        for (v, end) in VERSIONS {
            assert!(end.parse::<Date>().is_ok() && v.len() == 7, "{v} {end}");
        }
    }
}
