//! ApiVersions: the APIs and versions this broker serves (and nothing optional, so clients
//! that parse tagged fields strictly read it at any version).

use kafka_protocol::messages::ApiVersionsResponse;
use kafka_protocol::messages::api_versions_response::ApiVersion;

use super::versions::SUPPORTED;

/// The answer to ApiVersions, with `error_code` (0, or UNSUPPORTED_VERSION for a version we
/// do not know).
pub(super) fn handle(error_code: i16) -> ApiVersionsResponse {
    let api_keys = SUPPORTED
        .iter()
        .map(|&(key, min, max)| {
            ApiVersion::default()
                .with_api_key(key as i16)
                .with_min_version(min)
                .with_max_version(max)
        })
        .collect();
    ApiVersionsResponse::default()
        .with_error_code(error_code)
        .with_api_keys(api_keys)
}
