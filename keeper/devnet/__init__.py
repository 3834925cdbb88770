"""A local anvil chain with real Aave V3 and Morpho Blue, and a Comet stand-in, for the demo,
the tests and the benchmark.

Modules (the API of each is in its docstring):

* ``api``: ``deploy``, ``set_price``, ``get_price``, ``set_feed_updated_at``,
  ``advance_time``, ``apply_price_change``, ``borrower_key``, ``connect``;
* ``anvil``: ``start_anvil`` / ``stop_anvil`` (the npm anvil binary, 127.0.0.1 only);
* ``lifecycle``: ``up`` / ``down`` with a state dir (default ``.devnet/``);
* ``state``: ``DevnetInfo`` (every address), state.json and keeper.toml;
* ``cli``: ``devnet_app``, mounted as ``keeper devnet`` (up, down, price, advance);
* ``deploy`` / ``seed`` / ``params``: the Aave market, its borrowers and its parameters;
* ``morpho``: Morpho Blue compiled from npm sources, two markets, borrowers, ``follow_feed``;
* ``comet``: the ``CometStandIn`` (a stand-in for tests), its lenders and borrowers;
* ``artifacts`` / ``rpc`` / ``accounts`` / ``export_abi``: bytecode and ABIs from node_modules,
  batched JSON-RPC and a transaction queue, deterministic devnet keys, contracts/abi.

Nothing here is imported by the keeper's own run path.
"""
