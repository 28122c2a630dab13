//! The dashboard's sign-in settings: the admin and viewer tokens and how long a sign-in lasts.

use std::time::Duration;

use super::reader::{MIN_TOKEN_LEN, Reader};
use super::settings::DashboardSettings;

pub(super) fn read(r: &mut Reader<'_>) -> DashboardSettings {
    let hours = r.number::<u64>("dashboard.session_hours", 1, 24 * 30);
    if hours.is_none() && r.raw("dashboard.session_hours").is_none() {
        r.problem("dashboard.session_hours", "is not set");
    }
    DashboardSettings {
        admin_token: r.token("dashboard.admin_token", MIN_TOKEN_LEN),
        viewer_token: r.token("dashboard.viewer_token", MIN_TOKEN_LEN),
        session_ttl: Duration::from_secs(3600 * hours.unwrap_or(8)),
    }
}
