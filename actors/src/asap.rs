//! Acting on a cluster answer without a hop when it is already there. The `Local`
//! cluster answers on the first poll, so a single node handles presence and calls
//! in the same actor turn as it always did; with Redis the same code waits for the
//! round trip without blocking the actor.

use std::future::Future;

use actix::prelude::*;
use futures_util::FutureExt;

/// Runs `then` with `fut`'s output: at once if `fut` is ready on its first poll,
/// else when it completes (as a future of the actor, so the actor keeps handling
/// other messages meanwhile).
pub(crate) fn asap<A, F>(
    act: &mut A,
    ctx: &mut A::Context,
    fut: F,
    then: impl FnOnce(&mut A, F::Output, &mut A::Context) + 'static,
) where
    A: Actor,
    A::Context: AsyncContext<A>,
    F: Future + 'static,
{
    let mut fut = Box::pin(fut);
    match (&mut fut).now_or_never() {
        Some(out) => then(act, out, ctx),
        None => {
            ctx.spawn(
                fut.into_actor(act)
                    .map(move |out, act, ctx| then(act, out, ctx)),
            );
        }
    }
}

/// Runs `fut` to completion: now if it is ready on its first poll, else on the
/// current runtime.
pub(crate) fn detach(fut: impl Future<Output = ()> + 'static) {
    let mut fut = Box::pin(fut);
    if (&mut fut).now_or_never().is_none() {
        actix::spawn(fut);
    }
}
