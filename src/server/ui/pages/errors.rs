//! The error page a failed request renders: the status and its message in the page shell,
//! with no viewer (it may be drawn before anyone is known). Renders HTML only: the status and
//! the message come from `UiError`; this file decides neither and reads nothing.

use super::layout;
use crate::ui::html::Html;
use axum::http::StatusCode;

pub fn error_page(status: StatusCode, message: &str) -> String {
    let mut body = Html::new();
    body.raw("<h1>")
        .display(status.as_u16())
        .raw(" ")
        .text(status.canonical_reason().unwrap_or("error"))
        .raw("</h1><p class=\"error\" role=\"alert\">")
        .text(message)
        .raw("</p><p><a href=\"/\">Back to the library</a></p>");
    layout(None, "error", &body)
}
