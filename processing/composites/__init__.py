"""Annual composites: ITS_LIVE's per-pixel fit of annual means, trend and seasonal cycle,
batched over pixels."""
