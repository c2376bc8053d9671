#include "lib/tlog/tile_path.h"

#include <gtest/gtest.h>

namespace latch::tlog {
namespace {

TEST(TilePath, EncodesIndexInGroupsOfThree) {
  EXPECT_EQ(TileIndexPath(0), "000");
  EXPECT_EQ(TileIndexPath(5), "005");
  EXPECT_EQ(TileIndexPath(999), "999");
  EXPECT_EQ(TileIndexPath(1000), "x001/000");
  EXPECT_EQ(TileIndexPath(1234067), "x001/x234/067");
  EXPECT_EQ(TileIndexPath(UINT64_MAX), "x018/x446/x744/x073/x709/x551/615");
}

TEST(TilePath, FullPartialAndEntries) {
  EXPECT_EQ((TileId{0, 1234067, 256}).Path(), "tile/0/x001/x234/067");
  EXPECT_EQ((TileId{1, 3, 17}).Path(), "tile/1/003.p/17");
  EXPECT_EQ((TileId{TileId::kEntries, 1000, 255}).Path(), "tile/entries/x001/000.p/255");
}

TEST(TilePath, ParseIsTheInverseOfPath) {
  for (TileId t : {TileId{0, 0, 256}, TileId{0, 0, 1}, TileId{5, 1234067, 200},
                   TileId{TileId::kEntries, 999, 256}, TileId{TileId::kEntries, 1000, 3},
                   TileId{63, UINT64_MAX, 256}}) {
    TileId parsed;
    ASSERT_TRUE(TileId::Parse(t.Path(), &parsed).ok()) << t.Path();
    EXPECT_EQ(parsed, t) << t.Path();
  }
}

TEST(TilePath, ParseRejectsAnythingNonCanonical) {
  for (const char* bad : {"tile/0/1",
                          "tile/0/0001",
                          "tile/0/x000/123",
                          "tile/0/x001/23",
                          "tile/0/x1/234",
                          "tile/0/000.p/0",
                          "tile/0/000.p/256",
                          "tile/0/000.p/01",
                          "tile/0/000.p/",
                          "tile/64/000",
                          "tile/00/000",
                          "tile/-1/000",
                          "tile/entries/../000",
                          "tile/0/../../etc/passwd",
                          "tile/0/000/",
                          "tile//000",
                          "tile/0/",
                          "tiles/0/000",
                          "tile/entry/000",
                          "tile/0/x018/x446/x744/x073/x709/x551/616",
                          "tile/0/x001/x002/x003/x004/x005/x006/x007/008",
                          "/tile/0/000",
                          "tile/0/000.p/5/",
                          "tile/0/abc"}) {
    TileId t;
    EXPECT_FALSE(TileId::Parse(bad, &t).ok()) << bad;
  }
}

}  // namespace
}  // namespace latch::tlog
