// The agent-collector framing both ends use (schemas/wire_frame.h): what
// one end encodes the other reads, and whatever a hostile frame holds ends
// in a Corruption status, never an exception or a crash.
#include "schemas/wire_frame.h"

#include <capnp/message.h>
#include <gtest/gtest.h>

#include <string>

#include "schemas/canonical.h"

namespace latch::schema {
namespace {

std::string BatchFrame(size_t payload_bytes) {
  capnp::MallocMessageBuilder m;
  auto b = m.initRoot<Envelope>().initEventBatch();
  b.setBootId(AsData("0123456789abcdef"));
  b.setCheckpointSize(7);
  auto r = b.initRecords(1)[0];
  r.setSequence(1);
  r.setPayload(AsData(std::string(payload_bytes, 'p')));
  return EncodeFrame(m);
}

TEST(WireFrame, WhatOneEndEncodesTheOtherReads) {
  std::string frame = BatchFrame(100);
  bool seen = false;
  Status s = ReadFrame(frame, [&](Envelope::Reader env) {
    ASSERT_EQ(env.which(), Envelope::EVENT_BATCH);
    auto b = env.getEventBatch();
    EXPECT_EQ(AsString(b.getBootId()), "0123456789abcdef");
    EXPECT_EQ(b.getCheckpointSize(), 7u);
    ASSERT_EQ(b.getRecords().size(), 1u);
    EXPECT_EQ(AsString(b.getRecords()[0].getPayload()), std::string(100, 'p'));
    seen = true;
  });
  EXPECT_TRUE(s.ok()) << s.ToString();
  EXPECT_TRUE(seen);
}

TEST(WireFrame, BytesThatAreNotWholeWordsAreRefusedUnread) {
  bool called = false;
  auto handle = [&](Envelope::Reader) { called = true; };
  for (std::string bad : {std::string(), std::string("abc"), BatchFrame(8) + "x"}) {
    Status s = ReadFrame(bad, handle);
    EXPECT_EQ(s.code(), Status::Code::kCorruption);
    EXPECT_NE(s.message().find("whole"), std::string::npos) << s.message();
  }
  EXPECT_FALSE(called);
}

TEST(WireFrame, ATruncatedOrGarbledFrameIsCorruptionNotAnException) {
  std::string frame = BatchFrame(4096);
  std::string truncated = frame.substr(0, frame.size() / 2 / 8 * 8);
  Status s = ReadFrame(truncated, [](Envelope::Reader env) {
    (void)env.getEventBatch().getRecords()[0].getPayload().size();
  });
  EXPECT_EQ(s.code(), Status::Code::kCorruption);
  // Every byte flipped in turn: a status each time, never a throw.
  std::string small = BatchFrame(16);
  for (size_t i = 0; i < small.size(); ++i) {
    std::string g = small;
    g[i] = static_cast<char>(g[i] ^ 0xff);
    EXPECT_NO_THROW((void)ReadFrame(g, [](Envelope::Reader env) {
      if (env.which() != Envelope::EVENT_BATCH) return;
      for (auto r : env.getEventBatch().getRecords()) (void)r.getPayload().size();
    }));
  }
}

// A reader may walk about twice the frame's own words: reading a large
// field three times over is refused, so overlapping pointers cannot make a
// small frame cost a large amount of work.
TEST(WireFrame, ReadingIsBoundedByTheFramesOwnSize) {
  std::string frame = BatchFrame(64 * 1024);
  auto read_payload = [](Envelope::Reader env, int times) {
    for (int i = 0; i < times; ++i) {
      (void)env.getEventBatch().getRecords()[0].getPayload().size();
    }
  };
  EXPECT_TRUE(ReadFrame(frame, [&](Envelope::Reader env) { read_payload(env, 1); }).ok());
  Status s = ReadFrame(frame, [&](Envelope::Reader env) { read_payload(env, 3); });
  EXPECT_EQ(s.code(), Status::Code::kCorruption);
  EXPECT_NE(s.message().find("traversal"), std::string::npos) << s.message();
}

}  // namespace
}  // namespace latch::schema
