//! axum's `Json`, but taking a whole number written with a fraction
//! (`95.0`) for an integer field: JSON Schema, and so the API's document,
//! counts `95.0` as an integer, and some clients (JavaScript's, generated
//! ones) send numbers that way.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use crate::error::ApiError;

pub(crate) struct Json<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Json<T> {
    type Rejection = Response;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let is_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or_default().trim().to_ascii_lowercase())
            .is_some_and(|v| v == "application/json" || (v.starts_with("application/") && v.ends_with("+json")));
        if !is_json {
            let refusal = "expected a JSON body (Content-Type: application/json)";
            return Err(ApiError::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, refusal).into_response());
        }
        let bytes = Bytes::from_request(req, state).await.map_err(IntoResponse::into_response)?;
        match axum::Json::<T>::from_bytes(&bytes) {
            Ok(axum::Json(v)) => Ok(Json(v)),
            // Only then: the happy path reads the body once.
            Err(e) if e.body_text().contains("floating point") => {
                let Ok(mut v) = serde_json::from_slice::<Value>(&bytes) else { return Err(e.into_response()) };
                whole_numbers(&mut v);
                serde_path_to_error::deserialize(v).map(Json).map_err(|e| {
                    let detail = format!("Failed to deserialize the JSON body into the target type: {e}");
                    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, detail).into_response()
                })
            }
            Err(e) => Err(e.into_response()),
        }
    }
}

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

/// Writes every whole number in `v` as an integer (`95.0` as `95`).
fn whole_numbers(v: &mut Value) {
    match v {
        Value::Number(n) => {
            if let Some(f) = n.as_f64().filter(|f| n.is_f64() && f.fract() == 0.0) {
                // `u64::MAX as f64` is 2^64 itself: only below it is a u64 exact.
                if f >= 0.0 && f < u64::MAX as f64 {
                    *n = serde_json::Number::from(f as u64);
                } else if f < 0.0 && f >= i64::MIN as f64 {
                    *n = serde_json::Number::from(f as i64);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(whole_numbers),
        Value::Object(fields) => fields.values_mut().for_each(whole_numbers),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_numbers_become_integers_and_fractions_stay() {
        let mut v = serde_json::json!({"limit": 95.0, "rows": [1.0, -3.0, 2.5], "name": "x", "n": 7});
        whole_numbers(&mut v);
        assert_eq!(v, serde_json::json!({"limit": 95, "rows": [1, -3, 2.5], "name": "x", "n": 7}));
        let mut huge = serde_json::json!([18446744073709551616.0, 1e300]);
        whole_numbers(&mut huge);
        assert!(huge[0].is_f64() && huge[1].is_f64(), "beyond u64, a number stays as sent: {huge}");
        #[derive(serde::Deserialize)]
        struct Limit {
            limit: u32,
        }
        assert_eq!(serde_json::from_value::<Limit>(serde_json::json!({"limit": 95})).unwrap().limit, 95);
    }
}
