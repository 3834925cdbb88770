// SPDX-License-Identifier: MIT
pragma solidity 0.8.19;

/// @title PriceFeed: a stand-in for a Chainlink price aggregator, for keeper's local devnet only
/// @notice This is NOT a Chainlink aggregator and holds no oracle network behind it. One owner
///         sets the answer by hand so tests and demos can move prices on a local anvil chain.
///         It mirrors the read interface that consumers use (AggregatorInterface +
///         AggregatorV3Interface: `latestAnswer`, `latestRoundData`, `getRoundData`, ...) and
///         emits the same `AnswerUpdated` / `NewRound` events, so the Aave V3 AaveOracle and
///         keeper's own feed readers behave as they do against a real feed.
/// @dev Every `setAnswer` opens a new round (ids 1, 2, 3, ...). `setUpdatedAt` rewrites the
///      latest round's timestamp so staleness checks can be exercised without moving time.
contract PriceFeed {
  struct Round {
    int256 answer;
    uint256 startedAt;
    uint256 updatedAt;
  }

  /// @notice Decimals of the answer (8 for a USD feed, as Chainlink's USD feeds).
  uint8 public immutable decimals;
  /// @notice Human label, e.g. "WETH / USD (devnet)".
  string public description;
  /// @notice Interface version reported by Chainlink's AggregatorV3Interface.
  uint256 public constant version = 4;
  /// @notice The only account allowed to set answers.
  address public owner;

  uint256 private _latestRound;
  mapping(uint256 => Round) private _rounds;

  event AnswerUpdated(int256 indexed current, uint256 indexed roundId, uint256 updatedAt);
  event NewRound(uint256 indexed roundId, address indexed startedBy, uint256 startedAt);
  event OwnershipTransferred(address indexed previousOwner, address indexed newOwner);

  error NotOwner(address caller);
  error ZeroAddress();

  modifier onlyOwner() {
    if (msg.sender != owner) revert NotOwner(msg.sender);
    _;
  }

  constructor(uint8 decimals_, string memory description_, int256 initialAnswer) {
    decimals = decimals_;
    description = description_;
    owner = msg.sender;
    emit OwnershipTransferred(address(0), msg.sender);
    _newRound(initialAnswer);
  }

  /// @notice Open a new round with `answer`, stamped with the current block's timestamp.
  function setAnswer(int256 answer) external onlyOwner {
    _newRound(answer);
  }

  /// @notice Rewrite the latest round's `updatedAt` (and `startedAt` when it would be later),
  ///         to make the feed look stale (or fresh) without moving chain time.
  function setUpdatedAt(uint256 updatedAt) external onlyOwner {
    Round storage r = _rounds[_latestRound];
    r.updatedAt = updatedAt;
    if (r.startedAt > updatedAt) r.startedAt = updatedAt;
  }

  function transferOwnership(address newOwner) external onlyOwner {
    if (newOwner == address(0)) revert ZeroAddress();
    emit OwnershipTransferred(owner, newOwner);
    owner = newOwner;
  }

  // ---- AggregatorInterface (what AaveOracle calls) ----

  function latestAnswer() external view returns (int256) {
    return _rounds[_latestRound].answer;
  }

  function latestTimestamp() external view returns (uint256) {
    return _rounds[_latestRound].updatedAt;
  }

  function latestRound() external view returns (uint256) {
    return _latestRound;
  }

  function getAnswer(uint256 roundId) external view returns (int256) {
    return _rounds[roundId].answer;
  }

  function getTimestamp(uint256 roundId) external view returns (uint256) {
    return _rounds[roundId].updatedAt;
  }

  // ---- AggregatorV3Interface ----

  function latestRoundData()
    external
    view
    returns (
      uint80 roundId,
      int256 answer,
      uint256 startedAt,
      uint256 updatedAt,
      uint80 answeredInRound
    )
  {
    return _roundData(_latestRound);
  }

  function getRoundData(
    uint80 roundId
  )
    external
    view
    returns (uint80, int256 answer, uint256 startedAt, uint256 updatedAt, uint80 answeredInRound)
  {
    // Chainlink's aggregators revert with this message for a round they never saw.
    require(roundId != 0 && roundId <= _latestRound, "No data present");
    (, answer, startedAt, updatedAt, answeredInRound) = _roundData(roundId);
    return (roundId, answer, startedAt, updatedAt, answeredInRound);
  }

  function _roundData(
    uint256 roundId
  ) private view returns (uint80, int256, uint256, uint256, uint80) {
    Round storage r = _rounds[roundId];
    return (uint80(roundId), r.answer, r.startedAt, r.updatedAt, uint80(roundId));
  }

  function _newRound(int256 answer) private {
    uint256 roundId = _latestRound + 1;
    _latestRound = roundId;
    _rounds[roundId] = Round(answer, block.timestamp, block.timestamp);
    emit NewRound(roundId, msg.sender, block.timestamp);
    emit AnswerUpdated(answer, roundId, block.timestamp);
  }
}
