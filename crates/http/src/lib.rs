//! dovetail-http: the resilient HTTP client every API connector stands on.
//!
//! (Being built: see issue 3. `auth` holds the credential providers; the client, retry,
//! rate limiting, circuit breaker, cache and pagination modules sit beside it.)
#![warn(missing_docs)]

pub mod auth;
