//! The periods figures are rolled up by: UTC days, ISO weeks (Monday to Sunday) and calendar
//! months, each named by its first day.

use chrono::{Datelike, Days, Months, NaiveDate};

/// A kind of period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Period {
    Daily,
    Weekly,
    Monthly,
}

impl Period {
    /// Every kind, shortest first.
    pub const ALL: [Period; 3] = [Period::Daily, Period::Weekly, Period::Monthly];

    /// Its name in the API and in `metric_rollups.period`.
    pub fn as_str(self) -> &'static str {
        match self {
            Period::Daily => "daily",
            Period::Weekly => "weekly",
            Period::Monthly => "monthly",
        }
    }

    /// The kind named `name`.
    pub fn parse(name: &str) -> Option<Period> {
        Period::ALL.into_iter().find(|p| p.as_str() == name)
    }

    /// The first day of the period `day` is in.
    pub fn start_of(self, day: NaiveDate) -> NaiveDate {
        match self {
            Period::Daily => day,
            Period::Weekly => day - Days::new(u64::from(day.weekday().num_days_from_monday())),
            Period::Monthly => day.with_day(1).unwrap_or(day),
        }
    }

    /// The first day of the period after the one starting on `start`.
    pub fn next(self, start: NaiveDate) -> NaiveDate {
        match self {
            Period::Daily => start + Days::new(1),
            Period::Weekly => start + Days::new(7),
            Period::Monthly => start + Months::new(1),
        }
    }

    /// The first day of the period before the one starting on `start`.
    pub fn previous(self, start: NaiveDate) -> NaiveDate {
        match self {
            Period::Daily => start - Days::new(1),
            Period::Weekly => start - Days::new(7),
            Period::Monthly => start - Months::new(1),
        }
    }

    /// The starts of every period of this kind that overlaps `from..=to`, in order.
    pub fn starts(self, from: NaiveDate, to: NaiveDate) -> Vec<NaiveDate> {
        let mut starts = Vec::new();
        let mut start = self.start_of(from);
        while start <= to {
            starts.push(start);
            start = self.next(start);
        }
        starts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").expect("date")
    }

    #[test]
    fn weeks_are_iso_weeks_and_months_calendar_months() {
        // 2026-01-01 is a Thursday: its ISO week starts on Monday 2025-12-29.
        assert_eq!(Period::Weekly.start_of(d("2026-01-01")), d("2025-12-29"));
        assert_eq!(Period::Weekly.start_of(d("2025-12-29")), d("2025-12-29"));
        assert_eq!(Period::Weekly.start_of(d("2026-01-04")), d("2025-12-29"));
        assert_eq!(Period::Monthly.start_of(d("2026-02-28")), d("2026-02-01"));
        assert_eq!(Period::Monthly.next(d("2026-01-01")), d("2026-02-01"));
        assert_eq!(Period::Monthly.previous(d("2026-03-01")), d("2026-02-01"));
        assert_eq!(Period::Daily.previous(d("2026-03-01")), d("2026-02-28"));
        assert_eq!(
            Period::Weekly.starts(d("2026-11-30"), d("2026-12-14")),
            vec![d("2026-11-30"), d("2026-12-07"), d("2026-12-14")]
        );
        assert_eq!(
            Period::Monthly.starts(d("2026-11-30"), d("2026-12-01")),
            vec![d("2026-11-01"), d("2026-12-01")]
        );
        assert_eq!(Period::parse("weekly"), Some(Period::Weekly));
        assert_eq!(Period::parse("yearly"), None);
    }
}
