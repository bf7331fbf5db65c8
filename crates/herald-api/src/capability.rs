//! What an app-scoped token (and the portal session it opens) may do: Svix's
//! `AppPortalCapability`. A token issued without a list may do everything an
//! application token could before capabilities existed, posting messages and
//! changing the application included; one issued with a list may do only
//! what the list names, and anything the list cannot name is refused.

use axum::http::Method;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::ApiError;

/// One thing an app portal may be allowed to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub enum AppPortalCapability {
    /// Read the application, its endpoints, messages, attempts, stats and the
    /// event catalog. Always included.
    ViewBase,
    /// Read an endpoint's signing secret.
    ViewEndpointSecret,
    /// Rotate an endpoint's signing secret.
    ManageEndpointSecret,
    /// Accepted for compatibility; Herald has no transformations.
    ManageTransformations,
    /// Resend, recover, replay, redrive dead letters and send test events.
    CreateAttempts,
    /// Create, change, enable, disable and delete endpoints and their headers.
    ManageEndpoint,
}

const ALL: [AppPortalCapability; 6] = [
    AppPortalCapability::ViewBase,
    AppPortalCapability::ViewEndpointSecret,
    AppPortalCapability::ManageEndpointSecret,
    AppPortalCapability::ManageTransformations,
    AppPortalCapability::CreateAttempts,
    AppPortalCapability::ManageEndpoint,
];

impl AppPortalCapability {
    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

/// The capabilities of one token: a set, or unrestricted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    bits: u8,
    unrestricted: bool,
}

impl Capabilities {
    /// What a token issued without a list (and a tenant's own session) may
    /// do: every capability but `ManageTransformations`, which names nothing
    /// Herald has.
    pub const UNRESTRICTED: Self = Self {
        bits: !(1 << AppPortalCapability::ManageTransformations as u8),
        unrestricted: true,
    };

    /// Exactly `listed`, with `ViewBase` added; `read_only` keeps `ViewBase` alone.
    pub fn listed(listed: &[AppPortalCapability], read_only: bool) -> Self {
        let mut bits = AppPortalCapability::ViewBase.bit();
        if !read_only {
            bits |= listed.iter().fold(0, |bits, c| bits | c.bit());
        }
        Self {
            bits,
            unrestricted: false,
        }
    }

    /// From a token's claims: `None` is a token issued without a list.
    pub fn from_claim(claim: Option<&[AppPortalCapability]>) -> Self {
        claim.map_or(Self::UNRESTRICTED, |listed| Self::listed(listed, false))
    }

    /// What a token's claims record: `None` for unrestricted.
    pub fn to_claim(self) -> Option<Vec<AppPortalCapability>> {
        (!self.unrestricted).then(|| self.list())
    }

    pub fn has(self, capability: AppPortalCapability) -> bool {
        self.bits & capability.bit() != 0
    }

    /// Every capability held, in a fixed order.
    pub fn list(self) -> Vec<AppPortalCapability> {
        ALL.into_iter().filter(|c| self.has(*c)).collect()
    }

    /// Whether nothing but viewing is allowed.
    pub fn read_only(self) -> bool {
        !self.unrestricted && self.bits == AppPortalCapability::ViewBase.bit()
    }

    /// Refuses (403 `insufficient_capability`) a request these capabilities do
    /// not cover. `route` is the matched route's template; without one (an
    /// extractor run outside routing) a restricted token is refused.
    pub fn check(self, method: &Method, route: Option<&str>) -> Result<(), ApiError> {
        if self.unrestricted {
            return Ok(());
        }
        match route.and_then(|route| needed(method, route)) {
            Some(capability) if self.has(capability) => Ok(()),
            Some(capability) => Err(missing(capability)),
            None => Err(ApiError::refused(
                "insufficient_capability",
                "a token with a list of capabilities cannot use this route",
            )),
        }
    }
}

/// The refusal of a request that needs `capability`.
pub fn missing(capability: AppPortalCapability) -> ApiError {
    ApiError::refused(
        "insufficient_capability",
        format!("this token does not have the {capability:?} capability"),
    )
}

/// The capability a request to `route` (a route template) needs; `None` for
/// what only an unrestricted token may do (posting messages, changing the
/// application, expunging content).
fn needed(method: &Method, route: &str) -> Option<AppPortalCapability> {
    use AppPortalCapability::*;
    if method == Method::GET || method == Method::HEAD {
        return Some(if route.ends_with("/secret") {
            ViewEndpointSecret
        } else {
            ViewBase
        });
    }
    if route == "/api/v1/auth/logout" {
        return Some(ViewBase);
    }
    if route.ends_with("/secret/rotate") {
        return Some(ManageEndpointSecret);
    }
    const ATTEMPTS: [&str; 5] = [
        "/resend",
        "/recover",
        "/replay-missing",
        "/send-example",
        "/redrive",
    ];
    if ATTEMPTS.iter().any(|suffix| route.ends_with(suffix)) {
        return Some(CreateAttempts);
    }
    if route.starts_with("/api/v1/app/{app_id}/endpoint") {
        return Some(ManageEndpoint);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use AppPortalCapability::*;

    #[test]
    fn read_only_keeps_viewing_only() {
        let caps = Capabilities::listed(&[ManageEndpoint, CreateAttempts], true);
        assert!(caps.read_only());
        assert_eq!(caps.list(), vec![ViewBase]);
        let get = Method::GET;
        assert!(caps.check(&get, Some("/api/v1/app/{app_id}/msg")).is_ok());
        assert!(caps
            .check(
                &get,
                Some("/api/v1/app/{app_id}/endpoint/{endpoint_id}/secret")
            )
            .is_err());
        let post = Method::POST;
        for route in [
            "/api/v1/app/{app_id}/endpoint/{endpoint_id}/secret/rotate",
            "/api/v1/app/{app_id}/msg/{msg_id}/endpoint/{endpoint_id}/resend",
            "/api/v1/app/{app_id}/endpoint",
            "/api/v1/app/{app_id}/msg",
        ] {
            assert!(caps.check(&post, Some(route)).is_err(), "{route}");
        }
        assert!(caps.check(&post, Some("/api/v1/auth/logout")).is_ok());
        // Outside routing nothing is known of the request: refused.
        assert!(caps.check(&get, None).is_err());
    }

    #[test]
    fn each_capability_opens_its_routes_only() {
        let caps = Capabilities::listed(&[CreateAttempts], false);
        let post = Method::POST;
        assert!(caps
            .check(
                &post,
                Some("/api/v1/app/{app_id}/endpoint/{endpoint_id}/recover")
            )
            .is_ok());
        assert!(caps
            .check(
                &Method::PATCH,
                Some("/api/v1/app/{app_id}/endpoint/{endpoint_id}")
            )
            .is_err());
        let caps = Capabilities::listed(&[ManageEndpoint], false);
        assert!(caps
            .check(
                &Method::DELETE,
                Some("/api/v1/app/{app_id}/endpoint/{endpoint_id}")
            )
            .is_ok());
        assert!(caps
            .check(&Method::PUT, Some("/api/v1/app/{app_id}"))
            .is_err());
    }

    #[test]
    fn unrestricted_round_trips_as_no_claim() {
        assert_eq!(Capabilities::UNRESTRICTED.to_claim(), None);
        assert_eq!(Capabilities::from_claim(None), Capabilities::UNRESTRICTED);
        let caps = Capabilities::listed(&[ViewEndpointSecret], false);
        assert_eq!(Capabilities::from_claim(caps.to_claim().as_deref()), caps);
        assert!(Capabilities::UNRESTRICTED
            .check(&Method::POST, Some("/api/v1/app/{app_id}/msg"))
            .is_ok());
    }
}
