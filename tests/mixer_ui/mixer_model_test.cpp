// The mixer's qube model without a daemon: list replies, events, label
// colours, pending/denied microphone logic, bad input ignored.
#include <gtest/gtest.h>

#include <QJsonDocument>
#include <QSignalSpy>

#include "qube_model.hpp"
#include "ui_support.hpp"

namespace qaudio::mixer {
namespace {

QJsonArray parse_array(const char* text) {
  return QJsonDocument::fromJson(text).array();
}

const char* kList = R"([
  {"name":"work","label":"blue","state":"running","protocol":"native","volume":80,"muted":false,
   "latency_us":21000,"mic":{"requested":true,"attached":false,"persistent":false,"policy":"ask"},
   "counters":{"underruns":3}},
  {"name":"personal","label":"yellow","state":"waiting","protocol":"none","volume":50,
   "muted":true,"mic":{"requested":true,"attached":false,"policy":"deny"}},
  {"label":"red"}, {"name":""}, {"name":7}
])";

TEST(QubeModel, list_reply_fills_sorted_rows_and_skips_entries_without_a_name) {
  test::qt_app();
  QubeModel m;
  m.setFromList(parse_array(kList));
  ASSERT_EQ(m.rowCount(), 2);
  EXPECT_EQ(m.rows()[0].name, "personal");
  EXPECT_EQ(m.rows()[1].name, "work");
  const QubeRow* w = m.find("work");
  ASSERT_NE(w, nullptr);
  EXPECT_EQ(w->volume, 80);
  EXPECT_EQ(w->latency_us, 21000u);
  EXPECT_EQ(w->underruns, 3u);
  EXPECT_TRUE(w->running());
  EXPECT_TRUE(w->micPending());
  EXPECT_EQ(w->level, -1);  // the daemon reports no level
  const QubeRow* p = m.find("personal");
  EXPECT_TRUE(p->muted);
  EXPECT_TRUE(p->micDenied());
  EXPECT_FALSE(p->micPending());  // denied requests are not offered
  EXPECT_EQ(m.pendingMicRequests(), 1);
  EXPECT_EQ(m.data(m.index(1), Qt::DecorationRole).value<QColor>(), QColor("#3465a4"));
}

TEST(QubeModel, events_update_rows_and_unknown_ones_change_nothing) {
  test::qt_app();
  QubeModel m;
  m.setFromList(parse_array(kList));
  QSignalSpy changed(&m, &QAbstractItemModel::dataChanged);
  EXPECT_TRUE(m.applyEvent("volume_changed", {{"qube", "work"}, {"volume", 120}}));
  EXPECT_EQ(m.find("work")->volume, 120);
  EXPECT_TRUE(m.applyEvent("volume_changed", {{"qube", "work"}, {"volume", 900}}));
  EXPECT_EQ(m.find("work")->volume, 150);  // clamped
  EXPECT_TRUE(m.applyEvent("mute_changed", {{"qube", "work"}, {"muted", true}}));
  EXPECT_TRUE(m.find("work")->muted);
  EXPECT_TRUE(m.applyEvent("mic_attached", {{"qube", "work"}, {"persistent", false}}));
  EXPECT_TRUE(m.find("work")->mic_attached);
  EXPECT_FALSE(m.find("work")->micPending());
  EXPECT_TRUE(m.anyMicAttached());
  EXPECT_TRUE(m.applyEvent("mic_detached", {{"qube", "work"}}));
  EXPECT_FALSE(m.anyMicAttached());
  EXPECT_TRUE(m.applyEvent("qube_disconnected", {{"qube", "work"}, {"reason", "channel closed"}}));
  EXPECT_FALSE(m.find("work")->running());
  EXPECT_EQ(m.find("work")->last_error, "channel closed");
  EXPECT_TRUE(m.applyEvent("qube_connected", {{"qube", "work"}, {"protocol", "stock"}}));
  EXPECT_EQ(m.find("work")->protocol, "stock");
  EXPECT_EQ(changed.count(), 7);

  EXPECT_FALSE(m.applyEvent("volume_changed", {{"qube", "nope"}, {"volume", 1}}));
  EXPECT_FALSE(m.applyEvent("bogus", {{"qube", "work"}}));
  EXPECT_FALSE(m.applyEvent("volume_changed", {}));
  EXPECT_EQ(changed.count(), 7);
  EXPECT_EQ(m.rowCount(), 2);
}

TEST(QubeModel, same_qubes_update_in_place_new_ones_reset) {
  test::qt_app();
  QubeModel m;
  m.setFromList(parse_array(kList));
  QSignalSpy reset(&m, &QAbstractItemModel::modelReset);
  QSignalSpy changed(&m, &QAbstractItemModel::dataChanged);
  m.setFromList(parse_array(kList));
  EXPECT_EQ(reset.count(), 0);
  EXPECT_EQ(changed.count(), 1);
  m.setFromList(parse_array(R"([{"name":"vault","label":"black"}])"));
  EXPECT_EQ(reset.count(), 1);
  EXPECT_EQ(m.rowCount(), 1);
  EXPECT_EQ(m.find("vault")->volume, 100);  // defaults for missing members
}

TEST(LabelColor, qubes_labels_hex_and_fallback) {
  EXPECT_EQ(labelColor("red"), QColor("#cc0000"));
  EXPECT_EQ(labelColor("Yellow"), QColor("#edd400"));
  EXPECT_EQ(labelColor("#112233"), QColor("#112233"));
  EXPECT_EQ(labelColor("#12"), QColor(0x88, 0x8a, 0x85));
  EXPECT_EQ(labelColor("<script>"), QColor(0x88, 0x8a, 0x85));
}

}  // namespace
}  // namespace qaudio::mixer
