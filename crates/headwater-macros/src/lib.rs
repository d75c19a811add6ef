//! `#[flow]`, `#[task]` and `flows![]` for the Headwater SDK.
//!
//! The attributes keep the function's signature and call it through the
//! engine: `#[task]` wraps the body in a recorded task run (retries,
//! timeout, caching), `#[flow]` in a flow run with typed, validated
//! parameters. Options are checked here, so a typo in a duration is a
//! compile error pointing at it.

use proc_macro::TokenStream;
use proc_macro2::{Span, TokenStream as TokenStream2};
use quote::{format_ident, quote, ToTokens};
use syn::parse::Parser;
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{Expr, ExprLit, FnArg, Ident, ItemFn, Lit, Meta, Pat, Token};

use headwater_core::duration::parse_duration;

type Options = Vec<(Ident, Expr)>;

fn parse_options(attr: TokenStream) -> syn::Result<Options> {
    let metas = Punctuated::<Meta, Token![,]>::parse_terminated.parse(attr)?;
    metas
        .into_iter()
        .map(|m| match m {
            Meta::NameValue(nv) => {
                let ident =
                    nv.path.get_ident().cloned().ok_or_else(|| syn::Error::new(nv.path.span(), "expected a name"))?;
                Ok((ident, nv.value))
            }
            // A bare flag such as `refresh_cache` means `= true`.
            Meta::Path(p) => {
                let ident = p.get_ident().cloned().ok_or_else(|| syn::Error::new(p.span(), "expected a name"))?;
                Ok((ident.clone(), syn::parse_quote_spanned!(ident.span() => true)))
            }
            Meta::List(l) => Err(syn::Error::new(l.span(), "expected `name = value`")),
        })
        .collect()
}

fn err<T>(e: &impl Spanned, msg: impl std::fmt::Display) -> syn::Result<T> {
    Err(syn::Error::new(e.span(), msg))
}

fn lit_str(e: &Expr) -> syn::Result<String> {
    match e {
        Expr::Lit(ExprLit { lit: Lit::Str(s), .. }) => Ok(s.value()),
        _ => err(e, "expected a string literal"),
    }
}

fn lit_u32(e: &Expr) -> syn::Result<u32> {
    match e {
        Expr::Lit(ExprLit { lit: Lit::Int(i), .. }) => i.base10_parse(),
        _ => err(e, "expected a whole number"),
    }
}

fn lit_f64(e: &Expr) -> syn::Result<f64> {
    match e {
        Expr::Lit(ExprLit { lit: Lit::Int(i), .. }) => i.base10_parse::<u64>().map(|v| v as f64),
        Expr::Lit(ExprLit { lit: Lit::Float(f), .. }) => f.base10_parse(),
        _ => err(e, "expected a number"),
    }
}

fn lit_bool(e: &Expr) -> syn::Result<bool> {
    match e {
        Expr::Lit(ExprLit { lit: Lit::Bool(b), .. }) => Ok(b.value),
        _ => err(e, "expected true or false"),
    }
}

/// A duration as a number of seconds (`5`, `0.5`) or text (`"5m"`, `"1d"`).
fn duration_ms(e: &Expr) -> syn::Result<u64> {
    match e {
        Expr::Lit(ExprLit { lit: Lit::Str(s), .. }) => {
            parse_duration(&s.value()).map(|d| d.as_millis() as u64).or_else(|x| err(e, x))
        }
        _ => {
            let secs = lit_f64(e)?;
            if secs < 0.0 {
                return err(e, "a duration cannot be negative");
            }
            Ok((secs * 1000.0).round() as u64)
        }
    }
}

fn durations_ms(e: &Expr) -> syn::Result<Vec<u64>> {
    match e {
        Expr::Array(a) => a.elems.iter().map(duration_ms).collect(),
        _ => Ok(vec![duration_ms(e)?]),
    }
}

fn str_list(e: &Expr) -> syn::Result<Vec<String>> {
    match e {
        Expr::Array(a) => a.elems.iter().map(lit_str).collect(),
        _ => Ok(vec![lit_str(e)?]),
    }
}

fn path_of(e: &Expr) -> syn::Result<syn::Path> {
    match e {
        Expr::Path(p) => Ok(p.path.clone()),
        _ => err(e, "expected the path of a function"),
    }
}

fn opt_tokens<T: ToTokens>(v: &Option<T>) -> TokenStream2 {
    match v {
        Some(v) => quote!(::core::option::Option::Some(#v)),
        None => quote!(::core::option::Option::None),
    }
}

fn doc_text(f: &ItemFn) -> Option<String> {
    let lines: Vec<String> = f
        .attrs
        .iter()
        .filter(|a| a.path().is_ident("doc"))
        .filter_map(|a| match &a.meta {
            Meta::NameValue(nv) => lit_str(&nv.value).ok(),
            _ => None,
        })
        .map(|l| l.trim().to_string())
        .collect();
    let text = lines.join("\n").trim().to_string();
    (!text.is_empty()).then_some(text)
}

/// The argument names of a free async function, and a copy of its
/// signature without `mut` on the arguments (the wrapper only moves them).
fn arguments(f: &ItemFn, what: &str) -> syn::Result<(Vec<Ident>, syn::Signature)> {
    if f.sig.asyncness.is_none() {
        return err(&f.sig.fn_token, format!("#[{what}] goes on an `async fn`"));
    }
    let mut outer = f.sig.clone();
    let mut names = Vec::new();
    for arg in outer.inputs.iter_mut() {
        match arg {
            FnArg::Receiver(r) => return err(r, format!("#[{what}] goes on a free function, not a method")),
            FnArg::Typed(pt) => match &mut *pt.pat {
                Pat::Ident(pi) => {
                    pi.mutability = None;
                    names.push(pi.ident.clone());
                }
                other => return err(other, format!("#[{what}] arguments need plain names (no patterns)")),
            },
        }
    }
    Ok((names, outer))
}

fn inner_fn(f: &ItemFn) -> TokenStream2 {
    let mut sig = f.sig.clone();
    sig.ident = Ident::new("__hw_body", Span::call_site());
    let block = &f.block;
    quote! {
        #[allow(clippy::all, unused_mut)]
        #sig #block
    }
}

#[proc_macro_attribute]
pub fn task(attr: TokenStream, item: TokenStream) -> TokenStream {
    let f = syn::parse_macro_input!(item as ItemFn);
    expand_task(attr, f).unwrap_or_else(|e| e.to_compile_error()).into()
}

fn expand_task(attr: TokenStream, f: ItemFn) -> syn::Result<TokenStream2> {
    let (names, outer_sig) = arguments(&f, "task")?;
    let mut name = f.sig.ident.to_string();
    let mut retries = 0u32;
    let mut delays: Vec<u64> = Vec::new();
    let mut backoff: Option<u64> = None;
    let mut max_delay: u64 = 600_000;
    let mut jitter = 0f64;
    let mut retry_if: Option<syn::Path> = None;
    let mut timeout: Option<u64> = None;
    let mut tags: Vec<String> = Vec::new();
    let mut cache = quote!(None);
    let mut cached = false;
    let mut uses_inputs = false;
    let mut key_fn: Option<syn::Path> = None;
    let mut expiration: Option<u64> = None;
    let mut refresh = false;

    for (key, value) in parse_options(attr)? {
        match key.to_string().as_str() {
            "name" => name = lit_str(&value)?,
            "retries" => retries = lit_u32(&value)?,
            "retry_delay" | "retry_delay_seconds" => delays = durations_ms(&value)?,
            "exponential_backoff" => backoff = Some(duration_ms(&value)?),
            "max_retry_delay" => max_delay = duration_ms(&value)?,
            "retry_jitter_factor" => {
                jitter = lit_f64(&value)?;
                if !(0.0..=10.0).contains(&jitter) {
                    return err(&value, "retry_jitter_factor must be between 0 and 10");
                }
            }
            "retry_if" | "retry_condition" => retry_if = Some(path_of(&value)?),
            "timeout" => timeout = Some(duration_ms(&value)?),
            "tags" => tags = str_list(&value)?,
            "cache" | "cache_policy" => {
                let policy = match &value {
                    Expr::Path(p) => p.path.get_ident().map(|i| i.to_string()).unwrap_or_default(),
                    other => lit_str(other)?,
                };
                let (variant, inputs) = match policy.as_str() {
                    "none" => (quote!(None), false),
                    "inputs" => (quote!(Inputs), true),
                    "source" | "task_source" => (quote!(TaskSource), false),
                    "inputs_and_source" => (quote!(InputsAndSource), true),
                    _ => return err(&value, "expected inputs, task_source, inputs_and_source or none"),
                };
                cached = policy != "none";
                uses_inputs = inputs;
                cache = variant;
            }
            "cache_key_fn" => {
                key_fn = Some(path_of(&value)?);
                cached = true;
                cache = quote!(Custom);
            }
            "cache_expiration" => expiration = Some(duration_ms(&value)?),
            "refresh_cache" => refresh = lit_bool(&value)?,
            other => {
                return err(
                    &key,
                    format!(
                        "unknown task option `{other}`; expected name, retries, retry_delay, exponential_backoff, \
                         max_retry_delay, retry_jitter_factor, retry_if, timeout, tags, cache, cache_key_fn, \
                         cache_expiration, refresh_cache"
                    ),
                )
            }
        }
    }
    if expiration.is_some() && !cached {
        return err(&f.sig.ident, "cache_expiration needs a cache policy (cache = inputs, task_source, …)");
    }
    if backoff.is_some() && !delays.is_empty() {
        return err(&f.sig.ident, "give either retry_delay or exponential_backoff, not both");
    }

    let source_hash = blake3::hash(format!("{}{}", f.sig.to_token_stream(), f.block.to_token_stream()).as_bytes())
        .to_hex()
        .to_string();
    let backoff = opt_tokens(&backoff.map(|b| quote!((#b, #max_delay))));
    let timeout = opt_tokens(&timeout);
    let expiration = opt_tokens(&expiration);
    let inputs = if uses_inputs {
        quote!(::core::option::Option::Some(::headwater::__private::hash_inputs(&(#(&#names,)*))))
    } else {
        quote!(::core::option::Option::None)
    };
    let custom_key = match &key_fn {
        Some(p) => {
            quote!(::core::option::Option::Some(::std::string::ToString::to_string(&#p(#(&#names),*))))
        }
        None => quote!(::core::option::Option::None),
    };
    let retry_if = match &retry_if {
        Some(p) => quote!(::core::option::Option::Some(#p as fn(&_) -> bool)),
        None => quote!(::core::option::Option::None),
    };
    let runner = if cached { quote!(run_cached_task) } else { quote!(run_task) };
    // Only a task that may run its body more than once needs Clone inputs.
    let call_body = if retries > 0 {
        quote! {
            let __hw_args = (#(#names,)*);
            move || {
                let (#(#names,)*) = ::core::clone::Clone::clone(&__hw_args);
                __hw_body(#(#names),*)
            }
        }
    } else {
        quote! {
            let mut __hw_args = ::core::option::Option::Some((#(#names,)*));
            move || {
                let (#(#names,)*) = __hw_args.take().expect("a task without retries runs its body once");
                __hw_body(#(#names),*)
            }
        }
    };
    let inner = inner_fn(&f);
    let attrs = &f.attrs;
    let vis = &f.vis;
    Ok(quote! {
        #(#attrs)*
        #vis #outer_sig {
            #inner
            static __HW_SPEC: ::headwater::__private::TaskSpec = ::headwater::__private::TaskSpec {
                name: #name,
                source_hash: #source_hash,
                retries: #retries,
                retry_delays_ms: &[#(#delays),*],
                exponential_backoff_ms: #backoff,
                retry_jitter_factor: #jitter,
                timeout_ms: #timeout,
                tags: &[#(#tags),*],
                cache: ::headwater::__private::CachePolicy::#cache,
                cache_expiration_ms: #expiration,
                refresh_cache: #refresh,
            };
            let __hw_call_inputs = if ::headwater::__private::keeps_completed_calls() {
                #[allow(unused_imports)]
                use ::headwater::__private::{OpaqueInputs as _, StorableInputs as _};
                (&::headwater::__private::InputsProbe(&(#(&#names,)*))).call_inputs()
            } else {
                ::core::option::Option::None
            };
            let __hw_inputs = #inputs;
            let __hw_key = #custom_key;
            let __hw_run = { #call_body };
            let __hw_codec = {
                #[allow(unused_imports)]
                use ::headwater::__private::{OpaqueOutput as _, StorableOutput as _};
                (&::headwater::__private::output_probe(&__hw_run)).codec()
            };
            let __hw_call = ::headwater::__private::TaskCall {
                inputs: __hw_inputs,
                custom_key: __hw_key,
                retry_if: #retry_if,
                call_inputs: __hw_call_inputs,
                codec: __hw_codec,
            };
            ::headwater::__private::#runner(&__HW_SPEC, __hw_call, __hw_run).await
        }
    })
}

#[proc_macro_attribute]
pub fn flow(attr: TokenStream, item: TokenStream) -> TokenStream {
    let f = syn::parse_macro_input!(item as ItemFn);
    expand_flow(attr, f).unwrap_or_else(|e| e.to_compile_error()).into()
}

fn to_camel(s: &str) -> String {
    s.split('_')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let mut c = p.chars();
            c.next().map(|f| f.to_ascii_uppercase().to_string() + c.as_str()).unwrap_or_default()
        })
        .collect()
}

fn expand_flow(attr: TokenStream, f: ItemFn) -> syn::Result<TokenStream2> {
    let (names, outer_sig) = arguments(&f, "flow")?;
    if !f.sig.generics.params.is_empty() {
        return err(&f.sig.generics, "#[flow] functions cannot be generic: their parameters are stored as JSON");
    }
    let fn_name = &f.sig.ident;
    let mut name = fn_name.to_string().replace('_', "-");
    let mut version: Option<String> = None;
    let mut description = doc_text(&f);
    let mut retries = 0u32;
    let mut delays: Vec<u64> = Vec::new();
    let mut timeout: Option<u64> = None;
    let mut run_name: Option<String> = None;
    let mut tags: Vec<String> = Vec::new();
    let mut defaults: Option<String> = None;
    for (key, value) in parse_options(attr)? {
        match key.to_string().as_str() {
            "name" => name = lit_str(&value)?,
            "defaults" => {
                let text = lit_str(&value)?;
                if !text.trim_start().starts_with('{') {
                    return err(&value, r##"defaults is a JSON object, e.g. defaults = r#"{"year": 2021}"#"##);
                }
                defaults = Some(text);
            }
            "version" => version = Some(lit_str(&value)?),
            "description" => description = Some(lit_str(&value)?),
            "retries" => retries = lit_u32(&value)?,
            "retry_delay" | "retry_delay_seconds" => delays = durations_ms(&value)?,
            "timeout" => timeout = Some(duration_ms(&value)?),
            "run_name" | "flow_run_name" => run_name = Some(lit_str(&value)?),
            "tags" => tags = str_list(&value)?,
            other => {
                return err(
                    &key,
                    format!(
                        "unknown flow option `{other}`; expected name, version, description, retries, retry_delay, \
                         timeout, run_name, tags, defaults"
                    ),
                )
            }
        }
    }
    let mut types = Vec::new();
    for arg in &f.sig.inputs {
        if let FnArg::Typed(pt) = arg {
            types.push(pt.ty.clone());
        }
    }
    let params_ident = format_ident!("{}Params", to_camel(&fn_name.to_string()));
    let spec_ident = format_ident!("__HEADWATER_FLOW_SPEC_{}", fn_name.to_string().to_uppercase());
    let handle_fn = format_ident!("__headwater_flow_{}", fn_name);
    let version = opt_tokens(&version);
    let description = opt_tokens(&description);
    let timeout = opt_tokens(&timeout);
    let run_name = opt_tokens(&run_name);
    let defaults = opt_tokens(&defaults);
    let inner = inner_fn(&f);
    let attrs = &f.attrs;
    let vis = &f.vis;
    let params_doc = format!("Parameters of the flow `{name}`.");
    Ok(quote! {
        #[doc = #params_doc]
        #[derive(
            ::core::clone::Clone,
            ::headwater::__private::serde::Serialize,
            ::headwater::__private::serde::Deserialize,
            ::headwater::__private::schemars::JsonSchema
        )]
        #[serde(crate = "::headwater::__private::serde", deny_unknown_fields)]
        #[schemars(crate = "::headwater::__private::schemars")]
        #vis struct #params_ident {
            #( pub #names: #types, )*
        }

        #[doc(hidden)]
        #[allow(non_upper_case_globals)]
        static #spec_ident: ::headwater::__private::FlowSpec = ::headwater::__private::FlowSpec {
            name: #name,
            version: #version,
            description: #description,
            retries: #retries,
            retry_delays_ms: &[#(#delays),*],
            timeout_ms: #timeout,
            run_name: #run_name,
            tags: &[#(#tags),*],
            defaults: #defaults,
        };

        #(#attrs)*
        #vis #outer_sig {
            #inner
            let __hw_params = #params_ident { #(#names),* };
            ::headwater::__private::run_flow(
                &#spec_ident,
                __hw_params,
                |__hw_p: #params_ident| __hw_body(#(__hw_p.#names),*),
            )
            .await
        }

        #[doc(hidden)]
        #vis fn #handle_fn() -> ::headwater::FlowHandle {
            ::headwater::FlowHandle::new::<#params_ident, _, _>(&#spec_ident, |__hw_p: #params_ident| async move {
                #fn_name(#(__hw_p.#names),*)
                    .await
                    .map(|_| ())
                    .map_err(|e| ::std::format!("{e:#}"))
            })
        }
    })
}

/// `flows![a, module::b]`: the handles of `#[flow]` functions, for
/// `headwater::App::new`.
#[proc_macro]
pub fn flows(input: TokenStream) -> TokenStream {
    let parsed = Punctuated::<syn::Path, Token![,]>::parse_terminated.parse(input);
    let paths = match parsed {
        Ok(p) => p,
        Err(e) => return e.to_compile_error().into(),
    };
    let calls = paths.into_iter().map(|mut p| {
        if let Some(last) = p.segments.last_mut() {
            last.ident = format_ident!("__headwater_flow_{}", last.ident);
        }
        quote!(#p())
    });
    quote!(::std::vec![#(#calls),*]).into()
}
