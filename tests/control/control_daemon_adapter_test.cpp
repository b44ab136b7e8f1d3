// ControlDaemonAdapter on a real Daemon (null backend, unix channels to a
// temp dir where no qube answers): list, volume/mute/mic through the daemon
// and the mic gate, the events they publish, unsupported calls.
#include "control_daemon_adapter.hpp"

#include <gtest/gtest.h>

#include "control_test_util.hpp"

namespace qaudio::control {
namespace {

class AdapterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir = test::make_temp_dir();
    daemon::DaemonOptions o;
    o.channel = "unix:" + dir;
    o.backend = "null";
    o.qubes = {{"work", 5, "blue", std::nullopt}, {"personal", 7, "", 60}};
    auto d = daemon::Daemon::create(o);
    ASSERT_TRUE(d) << d.error().message;
    d_ = std::move(*d);
    adapter = std::make_unique<ControlDaemonAdapter>(
        *d_, [this](const ControlEvent& e) { events.push_back(event_line(e)); });
  }
  void TearDown() override {
    adapter.reset();
    d_.reset();
    std::string cmd = "rm -rf '" + dir + "'";
    ASSERT_EQ(std::system(cmd.c_str()), 0);
  }
  std::string dir;
  std::unique_ptr<daemon::Daemon> d_;
  std::unique_ptr<ControlDaemonAdapter> adapter;
  std::vector<std::string> events;
};

TEST_F(AdapterTest, list_reports_configured_qubes) {
  auto qs = adapter->list();
  ASSERT_EQ(qs.size(), 2u);
  EXPECT_EQ(qs[0].name, "personal");
  EXPECT_EQ(qs[0].volume, 60u);
  EXPECT_EQ(qs[1].name, "work");
  EXPECT_EQ(qs[1].domid, 5u);
  EXPECT_EQ(qs[1].state, "waiting");
  EXPECT_FALSE(qs[1].mic_attached);
  EXPECT_EQ(adapter->info().backend, "null");
}

TEST_F(AdapterTest, volume_and_mute_change_the_daemon_and_publish_events) {
  EXPECT_FALSE(adapter->set_volume("work", 42));
  EXPECT_EQ(d_->info("work")->volume_percent, 42u);
  EXPECT_FALSE(adapter->set_mute("work", true));
  EXPECT_TRUE(d_->info("work")->muted);
  EXPECT_FALSE(adapter->set_volume("work", 42)) << "no change, no event";
  EXPECT_EQ(events,
            (std::vector<std::string>{
                "{\"data\":{\"qube\":\"work\",\"volume\":42},\"event\":\"volume_changed\"}\n",
                "{\"data\":{\"muted\":true,\"qube\":\"work\"},\"event\":\"mute_changed\"}\n"}));
  adapter->poll();
  EXPECT_EQ(events.size(), 2u) << "poll does not repeat what was published";
}

TEST_F(AdapterTest, changes_made_elsewhere_are_found_by_poll) {
  ASSERT_TRUE(d_->set_volume("personal", 90));
  adapter->poll();
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0],
            "{\"data\":{\"qube\":\"personal\",\"volume\":90},\"event\":\"volume_changed\"}\n");
}

TEST_F(AdapterTest, mic_attach_and_detach_go_through_the_gate_with_events) {
  EXPECT_FALSE(adapter->set_mic_attached("work", true, false, false));
  EXPECT_TRUE(d_->info("work")->mic_attached);
  EXPECT_FALSE(adapter->set_mic_attached("work", false, false, false));
  EXPECT_FALSE(d_->info("work")->mic_attached);
  EXPECT_EQ(events,
            (std::vector<std::string>{
                "{\"data\":{\"persistent\":false,\"qube\":\"work\"},\"event\":\"mic_attached\"}\n",
                "{\"data\":{\"qube\":\"work\"},\"event\":\"mic_detached\"}\n"}));
}

TEST_F(AdapterTest, net_report_is_kept_per_qube_and_listed) {
  NetworkStatus n;
  n.peer = "192.0.2.7:40000";
  n.connected = true;
  n.rx_bytes = 5000;
  n.loss_pct = 2.5;
  EXPECT_FALSE(adapter->set_network("work", n));
  auto err = adapter->set_network("nope", n);
  ASSERT_TRUE(err);
  EXPECT_EQ(err->code, ErrorCode::NotFound);
  for (const auto& q : adapter->list()) {
    if (q.name == "work") {
      ASSERT_TRUE(q.network);
      EXPECT_EQ(q.network->rx_bytes, 5000u);
      EXPECT_DOUBLE_EQ(q.network->loss_pct, 2.5);
      EXPECT_LE(q.network->age_ms, 10'000u);
    } else {
      EXPECT_FALSE(q.network) << q.name << " is local";
    }
  }
  EXPECT_TRUE(events.empty());
}

TEST_F(AdapterTest, unknown_qube_is_not_found_and_set_output_unsupported) {
  EXPECT_EQ(adapter->set_volume("nope", 5)->code, ErrorCode::NotFound);
  EXPECT_EQ(adapter->set_mute("nope", true)->code, ErrorCode::NotFound);
  EXPECT_EQ(adapter->set_mic_attached("nope", true, false, false)->code, ErrorCode::NotFound);
  EXPECT_EQ(adapter->set_output("x", "")->code, ErrorCode::Unsupported);
  EXPECT_TRUE(adapter->devices());
}

}  // namespace
}  // namespace qaudio::control
