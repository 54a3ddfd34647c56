//! The login form: a token field, with the CSRF token and the page to return to carried
//! along, and the reason a previous attempt failed. Renders HTML only: checking the token and
//! setting the session cookie belong to the handlers and `session`, never here.

use super::layout;
use crate::ui::html::Html;

pub fn login(csrf: &str, next: &str, problem: Option<&str>) -> String {
    let mut body = Html::new();
    body.raw("<section class=\"login\"><h1>Log in</h1>");
    if let Some(problem) = problem {
        body.raw("<p class=\"error\" role=\"alert\">")
            .text(problem)
            .raw("</p>");
    }
    body.raw("<form method=\"post\" action=\"/login\">")
        .raw("<input type=\"hidden\" name=\"csrf\"")
        .attr("value", csrf)
        .raw("><input type=\"hidden\" name=\"next\"")
        .attr("value", next)
        .raw("><label for=\"token\">Token</label>")
        .raw("<input id=\"token\" name=\"token\" type=\"password\" autocomplete=\"current-password\" required autofocus>")
        .raw("<p class=\"muted\">A token from the server's token files: a read-write token may move tags, a read-only one sees everything and changes nothing.</p>")
        .raw("<button type=\"submit\">Log in</button></form></section>");
    layout(None, "log in", &body)
}
