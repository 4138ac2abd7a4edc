"""glacierflow: glacier velocity from repeat satellite images."""
