// Native frame codec: round trips of every message, exact bytes, split
// delivery, and every malformed input we can name (all terminal errors).
#include <gtest/gtest.h>

#include <string>

#include "sample_messages.hpp"

namespace qaudio::protocol {
namespace {

using testing::frame_of;
using testing::raw_frame;
using testing::sample_messages;

std::vector<std::byte> bytes(std::initializer_list<int> v) {
  std::vector<std::byte> out;
  for (int b : v) {
    out.push_back(std::byte(b));
  }
  return out;
}

// Feeds `in` in chunks of `chunk` bytes and re-encodes every message decoded;
// returns the re-encoded stream, or the error reason in `error`.
std::vector<std::byte> decode_reencode(std::span<const std::byte> in,
                                       size_t chunk,
                                       std::string* error = nullptr) {
  FrameDecoder dec;
  std::vector<std::byte> out;
  size_t pos = 0;
  for (;;) {
    for (;;) {
      auto r = dec.next();
      if (auto* m = std::get_if<Message>(&r)) {
        EXPECT_TRUE(encode(*m, out));
        continue;
      }
      if (auto* e = std::get_if<DecodeError>(&r)) {
        if (error != nullptr) {
          *error = e->reason;
        }
        return out;
      }
      break;
    }
    if (pos == in.size()) {
      return out;
    }
    pos += dec.feed(in.subspan(pos, std::min(chunk, in.size() - pos)));
  }
}

// Decodes one complete input; returns the decoder's error reason ("" if none).
std::string decode_error(std::span<const std::byte> in) {
  std::string error;
  decode_reencode(in, in.size() + 1, &error);
  return error;
}

TEST(ProtocolCodec, EveryMessageRoundTripsThroughTheDecoder) {
  for (const Message& m : sample_messages()) {
    SCOPED_TRACE(std::string(to_string(type_of(m))));
    auto frame = frame_of(m);
    ASSERT_FALSE(frame.empty());
    FrameDecoder dec;
    ASSERT_EQ(dec.feed(frame), frame.size());
    auto r = dec.next();
    auto* got = std::get_if<Message>(&r);
    ASSERT_NE(got, nullptr);
    EXPECT_EQ(*got, m);
    EXPECT_EQ(frame_of(*got), frame);
    EXPECT_TRUE(std::holds_alternative<NeedMore>(dec.next()));
  }
}

TEST(ProtocolCodec, VolumeStateHasTheDocumentedBytes) {
  EXPECT_EQ(frame_of(VolumeState{800, true}),
            bytes({0x01, 0x00, 0x50, 0x00, 0x04, 0x00, 0x00, 0x00, 0x20, 0x03, 0x01, 0x00}));
}

TEST(ProtocolCodec, ClockTickIsLittleEndianWithAZeroTail) {
  auto f = frame_of(ClockTick{0x0102030405060708ULL, 0x1112131415161718ULL, 48000});
  EXPECT_EQ(f, bytes({0x01, 0x00, 0x41, 0x00, 0x18, 0x00, 0x00, 0x00,  // header, 24 bytes
                      0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01,  // frames played
                      0x18, 0x17, 0x16, 0x15, 0x14, 0x13, 0x12, 0x11,  // device time
                      0x80, 0xbb, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00}));
}

TEST(ProtocolCodec, PlaybackFormatHasTheDocumentedBytes) {
  EXPECT_EQ(frame_of(PlaybackFormat{{SampleFormat::S32LE, 96000, 8}}),
            bytes({0x01, 0x00, 0x20, 0x00, 0x08, 0x00, 0x00, 0x00, 0x02, 0x08, 0x00, 0x00, 0x00,
                   0x77, 0x01, 0x00}));
}

TEST(ProtocolCodec, EmptyMessagesAreBareHeaders) {
  EXPECT_EQ(frame_of(Cork{}), bytes({0x01, 0x00, 0x30, 0x00, 0x00, 0x00, 0x00, 0x00}));
}

TEST(ProtocolCodec, AllMessagesDeliveredByteByByteDecodeIdentically) {
  std::vector<std::byte> stream;
  for (const Message& m : sample_messages()) {
    auto f = frame_of(m);
    stream.insert(stream.end(), f.begin(), f.end());
  }
  for (size_t chunk : {1, 2, 3, 7, 8, 13, 4104, 100000}) {
    SCOPED_TRACE(chunk);
    std::string error;
    EXPECT_EQ(decode_reencode(stream, chunk, &error), stream);
    EXPECT_EQ(error, "");
  }
}

TEST(ProtocolCodec, LargestMicDataRoundTripsAndOneMoreByteIsRejected) {
  std::vector<std::byte> pcm(kMaxMicData, std::byte{0x5a});
  auto f = frame_of(MicData{pcm});
  ASSERT_EQ(f.size(), kMaxFrameSize);
  EXPECT_EQ(decode_reencode(f, 1000), f);

  pcm.push_back(std::byte{0});
  FrameBuffer buf;
  auto r = encode(MicData{pcm}, buf);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("4097"), std::string::npos);
}

TEST(ProtocolCodec, EncodeIntoATooSmallBufferFails) {
  std::array<std::byte, 11> small{};
  auto r = encode(VolumeState{}, small);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("does not fit"), std::string::npos);
  std::array<std::byte, 12> exact{};
  EXPECT_EQ(*encode(VolumeState{}, exact), 12u);
}

TEST(ProtocolCodec, EncodeRefusesInvalidMessages) {
  FrameBuffer buf;
  EXPECT_FALSE(encode(VolumeState{1501, false}, buf));
  EXPECT_FALSE(encode(PlaybackFormat{{SampleFormat::S16LE, 22050, 2}}, buf));
  EXPECT_FALSE(encode(CaptureFormat{{SampleFormat::S16LE, 48000, 9}}, buf));
  EXPECT_FALSE(encode(MicData{}, buf));
  EXPECT_FALSE(encode(Latency{kMaxLatencyNs + 1, 0}, buf));
  EXPECT_FALSE(encode(Welcome{2, 1, 1, 0, 48000, 480}, buf));
  EXPECT_FALSE(encode(Heartbeat{}, buf, 0));
}

TEST(ProtocolCodec, PeerErrorMakeTruncatesAndReplacesUnprintables) {
  auto e = PeerError::make(ErrorCode::Internal, std::string(300, 'x'));
  EXPECT_EQ(e.message().size(), kMaxErrorText);
  EXPECT_TRUE(validate(e));
  auto f = PeerError::make(ErrorCode::Protocol, "bad\nline\x01");
  EXPECT_EQ(f.message(), "bad?line?");
}

TEST(ProtocolCodec, ZeroCopyWriteSpaceAndCommitDecode) {
  auto f = frame_of(Heartbeat{42});
  FrameDecoder dec;
  auto space = dec.write_space();
  ASSERT_GE(space.size(), f.size());
  std::copy(f.begin(), f.end(), space.begin());
  dec.commit(f.size());
  auto r = dec.next();
  ASSERT_TRUE(std::holds_alternative<Message>(r));
  EXPECT_EQ(std::get<Message>(r), Message{Heartbeat{42}});
}

TEST(ProtocolCodec, DecoderBufferHoldsAtMostOneFrameAndAlwaysProgresses) {
  std::vector<std::byte> stream;
  for (int i = 0; i < 2000; ++i) {
    auto f = frame_of(Heartbeat{static_cast<uint32_t>(i)});
    stream.insert(stream.end(), f.begin(), f.end());
  }
  FrameDecoder dec;
  size_t pos = 0;
  uint32_t expect = 0;
  while (pos < stream.size()) {
    size_t took = dec.feed(std::span(stream).subspan(pos));
    ASSERT_GT(took, 0u);
    ASSERT_LE(dec.buffered(), kMaxFrameSize);
    pos += took;
    for (auto r = dec.next(); std::holds_alternative<Message>(r); r = dec.next()) {
      EXPECT_EQ(std::get<Heartbeat>(std::get<Message>(r)).seq, expect++);
    }
  }
  EXPECT_EQ(expect, 2000u);
}

// ------------------------------------------------------------- malformed ----

TEST(ProtocolCodec, TruncatedHeaderAndPayloadWaitForMoreBytes) {
  auto f = frame_of(Latency{1, 2});
  for (size_t n = 0; n < f.size(); ++n) {
    FrameDecoder dec;
    dec.feed(std::span(f).first(n));
    EXPECT_TRUE(std::holds_alternative<NeedMore>(dec.next())) << n;
    EXPECT_FALSE(dec.failed());
  }
}

TEST(ProtocolCodec, LengthOverTheMaximumFailsFromTheHeaderAlone) {
  FrameDecoder dec;
  dec.feed(raw_frame(1, 0, 0x0060, kMaxPayload + 1));
  auto r = dec.next();
  ASSERT_TRUE(std::holds_alternative<DecodeError>(r));
  EXPECT_EQ(std::get<DecodeError>(r).reason,
            "frame header: payload length 4097 exceeds the maximum of 4096");
  EXPECT_NE(decode_error(raw_frame(1, 0, 0x7777, 0xffffffff)).find("4294967295"),
            std::string::npos);
}

TEST(ProtocolCodec, UnknownTypesAreSkippedWithinBounds) {
  auto stream = raw_frame(1, 0, 0x7777, 3, {9, 9, 9});
  auto big = raw_frame(1, 0, 0x1234, kMaxPayload, std::vector<uint8_t>(kMaxPayload, 0xee));
  stream.insert(stream.end(), big.begin(), big.end());
  auto known = frame_of(Heartbeat{7});
  stream.insert(stream.end(), known.begin(), known.end());

  FrameDecoder dec;
  size_t pos = 0;
  std::vector<Message> got;
  while (pos < stream.size()) {
    pos += dec.feed(std::span(stream).subspan(pos, std::min<size_t>(5, stream.size() - pos)));
    for (auto r = dec.next(); std::holds_alternative<Message>(r); r = dec.next()) {
      got.push_back(std::get<Message>(r));
    }
  }
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0], Message{Heartbeat{7}});
  EXPECT_EQ(dec.skipped_unknown(), 2u);
  EXPECT_FALSE(dec.failed());
}

TEST(ProtocolCodec, BadVersionFlagsAndReservedTypesAreErrors) {
  EXPECT_EQ(decode_error(raw_frame(2, 0, 0x0070, 4, {0, 0, 0, 0})),
            "frame header: version 2, expected 1");
  EXPECT_EQ(decode_error(raw_frame(0, 0, 0x0070, 4, {0, 0, 0, 0})),
            "frame header: version 0, expected 1");
  EXPECT_EQ(decode_error(raw_frame(1, 0x80, 0x0070, 4, {0, 0, 0, 0})),
            "frame header: flags 128, must be 0");
  // A stock mic-start word (01 00 01 00) where a native frame is expected.
  EXPECT_NE(decode_error(raw_frame(1, 0, 0x0001, 0)).find("type 1 is reserved"), std::string::npos);
}

TEST(ProtocolCodec, WrongPayloadLengthsOfKnownTypesAreErrors) {
  EXPECT_EQ(decode_error(raw_frame(1, 0, 0x0070, 5, {0, 0, 0, 0, 0})),
            "heartbeat: payload of 5 bytes, expected 4");
  EXPECT_EQ(decode_error(raw_frame(1, 0, 0x0030, 1, {0})), "cork: payload of 1 bytes, expected 0");
  EXPECT_EQ(decode_error(raw_frame(1, 0, 0x0060, 0)),
            "mic-data: payload of 0 bytes, expected 1..4096");
  EXPECT_EQ(decode_error(raw_frame(1, 0, 0x0080, 3, {1, 0, 0})),
            "error: payload of 3 bytes, expected 4..204");
}

TEST(ProtocolCodec, FormatsOutsideTheClosedListAreErrors) {
  // sample, channels, reserved(2), rate(4) = 48000 (0x0000bb80)
  auto fmt = [](uint8_t sample, uint8_t ch, uint32_t rate, uint8_t reserved = 0) {
    return raw_frame(1, 0, 0x0020, 8,
                     {sample, ch, reserved, 0, uint8_t(rate), uint8_t(rate >> 8),
                      uint8_t(rate >> 16), uint8_t(rate >> 24)});
  };
  EXPECT_EQ(decode_error(fmt(1, 2, 48000)), "");
  EXPECT_EQ(decode_error(fmt(0, 2, 48000)),
            "playback-format: sample format 0 is not one of 1 (s16le), 2 (s32le), 3 (f32le)");
  EXPECT_NE(decode_error(fmt(4, 2, 48000)), "");
  EXPECT_EQ(decode_error(fmt(1, 2, 22050)),
            "playback-format: rate 22050 Hz is not one of 44100, 48000, 96000");
  EXPECT_EQ(decode_error(fmt(1, 0, 48000)), "playback-format: 0 channels is not in 1..8");
  EXPECT_EQ(decode_error(fmt(1, 9, 48000)), "playback-format: 9 channels is not in 1..8");
  EXPECT_EQ(decode_error(fmt(1, 2, 48000, 1)), "playback-format: reserved field is 1, must be 0");
}

TEST(ProtocolCodec, OutOfRangeFieldsAreErrors) {
  EXPECT_EQ(decode_error(raw_frame(1, 0, 0x0050, 4, {0xdd, 0x05, 0, 0})),
            "volume-state: volume 1501 per mille exceeds 1500");
  EXPECT_EQ(decode_error(raw_frame(1, 0, 0x0050, 4, {0xdc, 0x05, 0, 0})), "");
  EXPECT_EQ(decode_error(raw_frame(1, 0, 0x0050, 4, {0, 0, 2, 0})),
            "volume-state: muted is 2, must be 0 or 1");
  EXPECT_EQ(decode_error(raw_frame(1, 0, 0x0051, 4, {1, 2, 0, 0})),
            "mic-state: allowed is 2, must be 0 or 1");
  EXPECT_EQ(decode_error(raw_frame(1, 0, 0x0051, 4, {1, 1, 1, 0})),
            "mic-state: reserved field is 1, must be 0");
  EXPECT_NE(decode_error(raw_frame(1, 0, 0x0022, 12, {2, 0, 0, 0, 1, 2, 0, 0, 0x80, 0xbb, 0, 0}))
                .find("direction 2"),
            std::string::npos);
  EXPECT_NE(decode_error(raw_frame(1, 0, 0x0023, 12, {0, 0, 9, 0, 1, 2, 0, 0, 0x80, 0xbb, 0, 0}))
                .find("reason 9"),
            std::string::npos);
  // Latency of 2^63 ns.
  EXPECT_NE(
      decode_error(raw_frame(1, 0, 0x0040, 16, {0, 0, 0, 0, 0, 0, 0, 0x80, 0, 0, 0, 0, 0, 0, 0, 0}))
          .find("exceeds the maximum"),
      std::string::npos);
  // Clock tick at 0 Hz.
  EXPECT_NE(decode_error(raw_frame(1, 0, 0x0041, 24, std::vector<uint8_t>(24, 0)))
                .find("device rate 0 Hz"),
            std::string::npos);
  // Welcome: version 3 outside the daemon's 1..1; period 0.
  EXPECT_NE(decode_error(
                raw_frame(1, 0, 0x0011, 16, {3, 1, 1, 0, 0, 0, 0, 0, 0x80, 0xbb, 0, 0, 1, 0, 0, 0}))
                .find("chosen version 3"),
            std::string::npos);
  EXPECT_NE(decode_error(
                raw_frame(1, 0, 0x0011, 16, {1, 1, 1, 0, 0, 0, 0, 0, 0x80, 0xbb, 0, 0, 0, 0, 0, 0}))
                .find("period of 0 frames"),
            std::string::npos);
}

TEST(ProtocolCodec, ErrorTextMustBeShortPrintableAscii) {
  std::vector<uint8_t> payload{1, 0, 0, 0};
  payload.insert(payload.end(), 201, 'a');
  EXPECT_EQ(decode_error(raw_frame(1, 0, 0x0080, 205, payload)),
            "error: payload of 205 bytes, expected 4..204");
  payload.resize(4 + 200);
  EXPECT_EQ(decode_error(raw_frame(1, 0, 0x0080, 204, payload)), "");
  EXPECT_EQ(decode_error(raw_frame(1, 0, 0x0080, 6, {1, 0, 0, 0, 'o', 0x07})),
            "error: text byte 1 (7) is not printable ASCII");
  EXPECT_EQ(decode_error(raw_frame(1, 0, 0x0080, 4, {0, 0, 0, 0})), "error: code 0 is reserved");
}

TEST(ProtocolCodec, AnErrorIsTerminalEvenWhenValidFramesFollow) {
  auto stream = bytes({0xde, 0xad, 0xbe, 0xef, 0, 0, 0, 0});  // garbage header
  auto valid = frame_of(Heartbeat{1});
  stream.insert(stream.end(), valid.begin(), valid.end());
  FrameDecoder dec;
  dec.feed(stream);
  auto first = dec.next();
  ASSERT_TRUE(std::holds_alternative<DecodeError>(first));
  for (int i = 0; i < 3; ++i) {
    auto again = dec.next();
    ASSERT_TRUE(std::holds_alternative<DecodeError>(again));
    EXPECT_EQ(std::get<DecodeError>(again).reason, std::get<DecodeError>(first).reason);
    EXPECT_EQ(dec.feed(valid), 0u);
    EXPECT_TRUE(dec.write_space().empty());
  }
  EXPECT_TRUE(dec.failed());
}

}  // namespace
}  // namespace qaudio::protocol
