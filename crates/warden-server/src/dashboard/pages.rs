//! The dashboard's HTML: a shell per page (navigation, sign-out, where its script writes
//! the data), and the sign-in form. Nothing from the ledger or the registry is put into
//! markup here; the pages' scripts write it as text. What little is interpolated (a
//! message, a form token) is escaped all the same.

use crate::html::esc;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};

/// The pages in the navigation: path and label.
const NAV: &[(&str, &str)] = &[
    ("/dashboard", "Overview"),
    ("/dashboard/incidents", "Incidents"),
    ("/dashboard/models", "Models"),
    ("/dashboard/access-review", "Access review"),
    ("/dashboard/reports", "Reports"),
];

fn head(title: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{} · Warden</title>\
         <link rel=\"icon\" href=\"data:,\">\
         <link rel=\"stylesheet\" href=\"/dashboard/assets/uPlot.min.css\">\
         <link rel=\"stylesheet\" href=\"/dashboard/assets/dashboard.css\">",
        esc(title)
    )
}

/// A signed-in page: navigation with `current` marked, a sign-out form carrying the
/// session's CSRF token, and `main` (markup written here, never data).
pub(crate) fn shell(title: &str, current: &str, csrf: &str, main: &str) -> Html<String> {
    let nav: String = NAV
        .iter()
        .map(|(href, label)| {
            let here = if *href == current {
                " aria-current=\"page\""
            } else {
                ""
            };
            format!("<a href=\"{href}\"{here}>{}</a>", esc(label))
        })
        .collect();
    Html(format!(
        "{}<meta name=\"csrf-token\" content=\"{}\">\
         <script src=\"/dashboard/assets/uPlot.iife.min.js\" defer></script>\
         <script src=\"/dashboard/assets/dashboard.js\" defer></script></head>\
         <body><header><a class=\"skip\" href=\"#main\">Skip to content</a>\
         <span class=\"brand\">Warden</span><nav aria-label=\"Dashboard\">{nav}</nav>\
         <form method=\"post\" action=\"/dashboard/sign-out\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{}\">\
         <button type=\"submit\">Sign out</button></form></header>\
         <main id=\"main\" tabindex=\"-1\"><h1>{}</h1>\
         <p id=\"status\" role=\"status\" aria-live=\"polite\"></p>{main}</main></body></html>",
        head(title),
        esc(csrf),
        esc(csrf),
        esc(title)
    ))
}

/// The sign-in form; `nonce` is its double-submitted CSRF token; `provider`: offer
/// signing in through the identity provider.
pub(crate) fn sign_in(nonce: &str, problem: Option<&str>, provider: bool) -> Html<String> {
    let problem = problem.map_or(String::new(), |p| {
        format!("<p class=\"problem\" role=\"alert\">{}</p>", esc(p))
    });
    let provider = if provider {
        "<p><a class=\"button\" id=\"oidc\" href=\"/dashboard/sign-in/oidc\">\
         Sign in with your identity provider</a></p><p class=\"hint\">or with a token:</p>"
    } else {
        ""
    };
    Html(format!(
        "{}</head><body class=\"sign-in\"><main id=\"main\">\
         <h1>Sign in to Warden</h1>{problem}{provider}\
         <form method=\"post\" action=\"/dashboard/sign-in\">\
         <label for=\"token\">Warden token</label>\
         <input id=\"token\" name=\"token\" type=\"password\" autocomplete=\"off\" required>\
         <input type=\"hidden\" name=\"csrf\" value=\"{}\">\
         <button type=\"submit\">Sign in</button></form>\
         <p class=\"hint\">A token with the <code>audit:read</code> scope: \
         <code>warden token create --principal NAME --scopes audit:read</code>.</p>\
         </main></body></html>",
        head("Sign in"),
        esc(nonce)
    ))
}

/// A refused action (403), as a page.
pub(crate) fn refused(why: &str) -> Response {
    (
        StatusCode::FORBIDDEN,
        Html(format!(
            "{}</head><body><main id=\"main\"><h1>Refused</h1><p role=\"alert\">{}</p>\
             <p><a href=\"/dashboard\">Back to the dashboard</a></p></main></body></html>",
            head("Refused"),
            esc(why)
        )),
    )
        .into_response()
}
