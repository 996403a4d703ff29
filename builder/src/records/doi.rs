//! DOIs: the resolver's handle API (`<resolver>api/handles/<DOI>`) gives the URL a DOI lands on.

use serde::Deserialize;

use super::failed;
use super::http::Http;
use crate::error::BuildError;

/// What a DOI's path segments keep unencoded in the handle API's URL.
const DOI_PART: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'.')
    .remove(b'-')
    .remove(b'_');

/// The URL the DOI resolver's handle API gives for `doi` (its first `URL` value).
pub(super) async fn resolve(http: &Http, resolver: &str, doi: &str) -> Result<String, BuildError> {
    let encoded: String = doi
        .split('/')
        .map(|part| percent_encoding::utf8_percent_encode(part, DOI_PART).to_string())
        .collect::<Vec<_>>()
        .join("/");
    let url = format!("{resolver}api/handles/{encoded}");
    #[derive(Deserialize)]
    struct Data {
        #[serde(default)]
        value: serde_json::Value,
    }
    #[derive(Deserialize)]
    struct Value {
        #[serde(rename = "type")]
        kind: String,
        data: Data,
    }
    #[derive(Deserialize)]
    struct Handle {
        #[serde(default)]
        values: Vec<Value>,
    }
    let handle: Handle = http
        .json(&url, &format!("the DOI {doi}"))
        .await
        .map_err(|e| match e {
            BuildError::Record { status: 404, .. } => BuildError::UnknownRef {
                url: resolver.to_string(),
                reference: doi.to_string(),
                hint: " (the DOI resolver does not know this DOI)".into(),
            },
            other => other,
        })?;
    handle
        .values
        .into_iter()
        .find(|v| v.kind == "URL")
        .and_then(|v| v.data.value.as_str().map(str::to_string))
        .ok_or_else(|| failed(&url, format!("the DOI {doi} names no URL"), 404))
}
